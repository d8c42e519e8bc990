"""The learnable ceiling on simulated data: a model with the simulator's own functional form.

`oracle_auc` ranks impressions by the true click probabilities, which no model
trained on a finite log can know. `fit_well_specified` measures how much of that
oracle is *learnable from the data at hand*: it fits `WellSpecifiedModel`, whose
logit has exactly the form of the simulator's ground truth (module docstring of
`widedeep.data.simulator.world`), with only the numbers left to learn:

    logit = b + cell[region, category] + cell[age, category]
          + <user[u] + region[r] + age[a], item[i]> + item_bias[i]
          + sum_s beta_s * sum_p w_s[p] cos(item[i], item[h_s,p]) / sum_p w_s[p]

(`h_s,p` is position `p` of feedback sequence `s`; padded positions have weight 0.)
It knows the true latent width, that the feedback enters through cosine
similarities in the same item space as the affinity, and that it is a
normalised, position-weighted mean; it learns every vector, cell, bias, weight and
`beta_s` from the training split with Adam, and the test AUC is read at the
epoch with the best validation AUC (the last 10% of the training period, as
`widedeep train` holds out). With the true values (`ground_truth_weights`) the
model reproduces `true_probability` exactly (tested), so its test AUC is an
estimate of what any model can learn from this many impressions, and a far
more useful yardstick than the oracle when the data are small.

`benchmarks/well_specified.py` runs it from the command line and
`benchmarks/quality.py --models ...,well_specified` beside the library's models.
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from widedeep.data.simulator import SimulatorConfig, first_test_round, simulate
from widedeep.data.simulator.world import World, make_world
from widedeep.metrics import auc
from widedeep.schema import FEEDBACK_SEQUENCES

__all__ = ["FEATURES", "WellSpecifiedModel", "fit_well_specified", "ground_truth_weights"]

FEATURES = (
    "user_id",
    "user_region",
    "user_age_group",
    "item_id",
    "item_category",
    *(f"{name}_item_id" for name in FEEDBACK_SEQUENCES),
)
_SOFTPLUS_OF_ZERO_SHIFT = math.log(math.e - 1.0)  # softplus(0 + shift) == 1


class WellSpecifiedModel(keras.Model):
    """The simulator's click logit with every number learnable (see the module docstring).

    Args:
        config: the simulator settings of the data (cardinalities, `latent_dim`,
            `max_length`).
        user_l2: L2 penalty on the per-user vectors (a user has few impressions).

    Call arguments:
        inputs: dict of int arrays `FEATURES` (sequences `[B, L]`, padded with -1).

    Returns:
        The click logit, `[B]`.
    """

    def __init__(self, config: SimulatorConfig, user_l2: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        c = self.sim = config
        d = c.latent_dim
        zeros = keras.initializers.Zeros()
        self.region_cells = keras.layers.Embedding(
            c.num_regions * c.num_categories, 1, embeddings_initializer=zeros
        )
        self.age_cells = keras.layers.Embedding(
            c.num_age_groups * c.num_categories, 1, embeddings_initializer=zeros
        )
        self.user = keras.layers.Embedding(
            c.num_users,
            d,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.01),
            embeddings_regularizer=keras.regularizers.L2(user_l2),
        )
        self.region = keras.layers.Embedding(c.num_regions, d)
        self.age = keras.layers.Embedding(c.num_age_groups, d)
        self.item = keras.layers.Embedding(c.num_items + 1, d)  # the last row stands for padding
        self.item_bias = keras.layers.Embedding(c.num_items, 1, embeddings_initializer=zeros)
        self.position_logits = self.add_weight(
            shape=(len(FEEDBACK_SEQUENCES), c.max_length), initializer=zeros, name="position_logits"
        )
        self.beta = self.add_weight(
            shape=(len(FEEDBACK_SEQUENCES),), initializer=zeros, name="beta"
        )
        self.bias = self.add_weight(shape=(), initializer=zeros, name="bias")

    def position_weights(self) -> tf.Tensor:
        """`w_s[p]`, positive, `[3, L]` (all 1 at initialisation)."""
        return tf.nn.softplus(self.position_logits + _SOFTPLUS_OF_ZERO_SHIFT)

    def call(self, inputs: dict[str, Any]) -> tf.Tensor:
        c = self.sim
        category = inputs["item_category"]
        logit = (
            self.bias
            + self.region_cells(inputs["user_region"] * c.num_categories + category)[:, 0]
            + self.age_cells(inputs["user_age_group"] * c.num_categories + category)[:, 0]
        )
        taste = (
            self.user(inputs["user_id"])
            + self.region(inputs["user_region"])
            + self.age(inputs["user_age_group"])
        )
        target = self.item(inputs["item_id"])
        logit += tf.reduce_sum(taste * target, -1) + self.item_bias(inputs["item_id"])[:, 0]
        unit_target = tf.math.l2_normalize(target, -1)
        weights = self.position_weights()
        for k, name in enumerate(FEEDBACK_SEQUENCES):
            history = inputs[f"{name}_item_id"]
            valid = history >= 0
            items = self.item(tf.where(valid, history, c.num_items))
            cosine = tf.einsum("bd,bld->bl", unit_target, tf.math.l2_normalize(items, -1))
            w = weights[k][None, :] * tf.cast(valid, cosine.dtype)
            total = tf.reduce_sum(w, -1)
            mean = tf.math.divide_no_nan(tf.reduce_sum(w * cosine, -1), total)
            logit += self.beta[k] * mean
        return logit


def ground_truth_weights(model: WellSpecifiedModel, world: World) -> None:
    """Sets `model` to the simulator's true parameters (the world of `model.sim`).

    The taste goes to the per-user vectors (its region and age parts included),
    scaled by `affinity_effect / sqrt(latent_dim)`; the region and age vectors
    are zero.
    """
    c = model.sim
    d = c.latent_dim
    model.region_cells.embeddings.assign(world.region_x_category.reshape(-1, 1))
    model.age_cells.embeddings.assign(world.age_x_category.reshape(-1, 1))
    model.user.embeddings.assign(world.user_taste * c.affinity_effect / math.sqrt(d))
    model.region.embeddings.assign(np.zeros((c.num_regions, d)))
    model.age.embeddings.assign(np.zeros((c.num_age_groups, d)))
    model.item.embeddings.assign(np.concatenate([world.item_latent, np.ones((1, d))]))
    model.item_bias.embeddings.assign(world.item_static.reshape(-1, 1))
    decay = c.feedback_decay ** np.arange(c.max_length)
    inverse_softplus = np.log(np.expm1(decay)) - _SOFTPLUS_OF_ZERO_SHIFT
    model.position_logits.assign(np.tile(inverse_softplus, (len(FEEDBACK_SEQUENCES), 1)))
    model.beta.assign(
        [c.click_feedback_effect, -c.unclick_feedback_effect, -c.dislike_feedback_effect]
    )
    model.bias.assign(c.bias)


def fit_well_specified(
    config: SimulatorConfig,
    *,
    seed: int = 0,
    epochs: int = 20,
    patience: int = 3,
    learning_rate: float = 3e-3,
    batch_size: int = 512,
    user_l2: float = 1e-4,
    validation_fraction: float = 0.1,
    learn: str = "all",
    columns: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Trains `WellSpecifiedModel` on the simulated data of `config` with early stopping.

    Args:
        config: the simulator settings (the data are re-simulated in memory; a
            seed gives the same rows as `widedeep simulate`).
        seed: training seed (initialisation and shuffling).
        epochs: most epochs; training stops after `patience` epochs without a
            better validation AUC.
        patience: see `epochs`.
        learning_rate: Adam's learning rate.
        batch_size: impressions per step.
        user_l2: L2 penalty on the per-user vectors.
        validation_fraction: the last part of the training period held out for
            early stopping.
        learn: `"all"` learns every number; `"users"` is a diagnostic that starts
            from the world's true numbers, sets each user's vector to its region
            and age-group part only, and learns the users' individual parts alone
            (how much of the oracle is lost to estimating the user side).
        columns: the output of `simulate(config)`, to skip re-simulating.

    Returns:
        `auc` (test AUC at the best validation epoch), `validation_auc`,
        `best_epoch`, `epochs_run`, `oracle_auc` (of `true_probability` on the test
        split), the learned `beta`, per-epoch `history` and `seconds`.
    """
    start = time.perf_counter()
    columns = columns if columns is not None else simulate(config)
    test = columns["round"] >= first_test_round(config)
    train_rows = int((~test).sum())
    fit_rows = int(round(train_rows * (1.0 - validation_fraction)))
    features = {k: columns[k].astype(np.int64) for k in FEATURES}
    label = columns["label"].astype(np.float32)

    def rows(a: int, b: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {k: v[a:b] for k, v in features.items()}, label[a:b]

    (x_fit, y_fit), (x_val, y_val), (x_test, y_test) = (
        rows(0, fit_rows),
        rows(fit_rows, train_rows),
        rows(train_rows, len(label)),
    )
    if learn not in ("all", "users"):
        raise ValueError(f"learn must be 'all' or 'users'. Received: learn={learn!r}")
    keras.utils.set_random_seed(seed)
    model = WellSpecifiedModel(config, user_l2=user_l2)
    if learn == "users":
        model(rows(0, 1)[0])
        world = make_world(config, np.random.default_rng(config.seed))
        ground_truth_weights(model, world)
        scale = config.affinity_effect / math.sqrt(config.latent_dim)
        model.user.embeddings.assign(world.user_taste_attributes * scale)
        for variable in model.trainable_variables:
            if variable is not model.user.embeddings:
                variable.trainable = False
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"validation_auc": -1.0}
    for epoch in range(1, epochs + 1):
        model.fit(x_fit, y_fit, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
        val = auc(y_val, model.predict(x_val, batch_size=8192, verbose=0))
        test_auc = auc(y_test, model.predict(x_test, batch_size=8192, verbose=0))
        history.append({"epoch": epoch, "validation_auc": val, "test_auc": test_auc})
        if val > best["validation_auc"]:
            best = {
                "validation_auc": val,
                "auc": test_auc,
                "best_epoch": epoch,
                "beta": [float(b) for b in model.beta.numpy()],
            }
        elif epoch - best["best_epoch"] >= patience:
            break
    return {
        **best,
        "epochs_run": len(history),
        "oracle_auc": auc(y_test, columns["true_probability"][train_rows:]),
        "history": history,
        "seconds": time.perf_counter() - start,
    }
