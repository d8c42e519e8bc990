"""KerasTuner hypermodels of Wide & Deep and DFN that tune both optimizers and the loss weights.

KerasTuner's own `optimizer=` override assumes the usual one-optimizer
`compile(optimizer=...)`. A `WideDeepModel` has two (FTRL for the `wide`
branch, Adagrad for the rest), so these hypermodels compile the model
themselves: `build(hp)` returns a model compiled with `wide_optimizer` and
`deep_optimizer` made from the trial's values. The DFN dislike loss weight is a
property of the data (a sample weight), so `fit(hp, model, ...)` builds the
trial's datasets with `feedback_weights=(1, 1, dislike_weight)`.

Every hyper-parameter's default is the value `widedeep train` uses without
flags, so `build(keras_tuner.HyperParameters())` is the untuned baseline.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf

from widedeep.callbacks import OptimizerLogger, ValidationGAUC
from widedeep.data.carve import count_rows, validation_carve
from widedeep.data.reader import Rows, load_dataset_dir
from widedeep.data.training_pipelines import memory_cache_fits, training_datasets
from widedeep.errors import UsageError
from widedeep.models.dfn import DFN_DEFAULTS, build_dfn
from widedeep.models.two_optimizer_model import WideDeepModel
from widedeep.models.wide_deep import build_wide_deep
from widedeep.optimizers import OptimizerConfig
from widedeep.schema import FEEDBACK_SEQUENCES, Schema
from widedeep.training import DEFAULT_FEEDBACK_WEIGHTS, TrainConfig, build_model, compile_model

__all__ = [
    "TUNABLE_MODELS",
    "CTRHyperModel",
    "DFNHyperModel",
    "TrialData",
    "WideDeepHyperModel",
    "get_hypermodel",
]

TUNABLE_MODELS = ("wide_deep", "dfn")
"""Model names with a hypermodel (see `get_hypermodel`)."""

HIDDEN_UNITS_CHOICES = ("32,16", "64,32", "128,64", "256,128", "256,128,64")
"""Deep MLP widths searched, as comma-separated strings (TensorBoard's hparams take scalars)."""

SEQUENCE_LENGTH_LADDER = (5, 10, 20, 50, 100)
"""Sequence lengths tried below the schema's `max_length` (which is always tried)."""

_OPTIMIZER_DEFAULTS = OptimizerConfig()


def _accumulator(hp: kt.HyperParameters, name: str) -> float:
    """An initial accumulator, log-uniform in [1e-6, 1], defaulting to `OptimizerConfig`'s."""
    return hp.Float(name, 1e-6, 1.0, sampling="log", default=getattr(_OPTIMIZER_DEFAULTS, name))


def _builder_default(builder: Any, name: str) -> Any:
    return inspect.signature(builder).parameters[name].default


def _units_string(units: Any) -> str:
    return ",".join(str(int(u)) for u in units)


@dataclass(frozen=True)
class TrialData:
    """Where a trial's training and validation batches come from.

    Both sets are rows of the *train* split, carved as `widedeep train` carves them
    (`widedeep.data.carve`: the most recent rows, or each user's last rows for a
    per-user split), so the test split is never read during a search.

    Args:
        data_dir: the dataset directory.
        fit_rows: rows of the train split to fit on: `(start, stop)` or an array of
            row numbers (`widedeep.data.reader.Rows`).
        validation_rows: rows of the train split to validate on, likewise.
        batch_size: training batch size.
        seed: seed of the training shuffle (the same for every trial).
        validation_batch_size: batch size of the validation pass.
        cache_mb: as `widedeep.training.TrainConfig.cache_mb`: each trial parses its rows
            once and keeps them in memory for its epochs when they fit this budget.

    Example:

    ```python
    data = TrialData.from_dataset_dir("data/sim", validation_fraction=0.1)
    train_ds, valid_ds = data.datasets(feedback_weights=(1, 1, 10))
    ```
    """

    data_dir: str
    fit_rows: Rows
    validation_rows: Rows
    batch_size: int = 512
    seed: int = 0
    validation_batch_size: int = 4096
    cache_mb: int | None = TrainConfig.cache_mb
    carve: str = "time"
    """How the rows were chosen: one of `widedeep.data.carve.CARVES`."""

    def __post_init__(self) -> None:
        if isinstance(self.fit_rows, np.ndarray) or isinstance(self.validation_rows, np.ndarray):
            fit, valid = (np.asarray(r) for r in (self.fit_rows, self.validation_rows))
            if not (fit.size and valid.size) or np.intersect1d(fit, valid).size:
                raise ValueError(
                    "fit_rows and validation_rows must be non-empty and disjoint. Received: "
                    f"{fit.size} fit rows and {valid.size} validation rows, "
                    f"{np.intersect1d(fit, valid).size} in both"
                )
            return
        (fit_start, fit_stop), (valid_start, valid_stop) = self.fit_rows, self.validation_rows
        if not 0 <= fit_start < fit_stop <= valid_start < valid_stop:
            raise ValueError(
                "fit_rows and validation_rows must be non-empty, disjoint and in time order "
                f"(fit before validation). Received: fit_rows={self.fit_rows}, "
                f"validation_rows={self.validation_rows}"
            )

    @classmethod
    def from_dataset_dir(
        cls,
        data_dir: str,
        validation_fraction: float = 0.1,
        batch_size: int = 512,
        seed: int = 0,
    ) -> TrialData:
        """Carves the train split like `widedeep.training.train` (`widedeep.data.carve.validation_carve`)."""
        if not 0 < validation_fraction < 1:
            raise UsageError(
                "a search needs validation rows: validation_fraction must be in (0, 1). "
                f"Received: validation_fraction={validation_fraction}"
            )
        carve = validation_carve(data_dir, validation_fraction)
        return cls(
            data_dir=str(data_dir),
            fit_rows=carve.fit_rows,
            validation_rows=carve.validation_rows,
            batch_size=batch_size,
            seed=seed,
            carve=carve.kind,
        )

    @property
    def num_fit_rows(self) -> int:
        return count_rows(self.fit_rows)

    def datasets(
        self,
        schema: Schema | None = None,
        feedback_weights: tuple[float, float, float] | None = None,
    ) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        """`(train, validation)` pipelines of `(features, label, sample_weight)` batches."""
        if schema is None:
            schema, _ = load_dataset_dir(self.data_dir)
        return training_datasets(
            self.data_dir,
            schema,
            self.fit_rows,
            self.validation_rows,
            batch_size=self.batch_size,
            seed=self.seed,
            feedback_weights=feedback_weights,
            validation_batch_size=self.validation_batch_size,
            cache=memory_cache_fits(
                schema, count_rows(self.fit_rows) + count_rows(self.validation_rows), self.cache_mb
            ),
        )


class CTRHyperModel(kt.HyperModel):
    """Search space of one `widedeep` model: both optimizers, the architecture, the loss weights.

    Hyper-parameters (the default is what `widedeep train` uses without flags):

    | name | values | default |
    |---|---|---|
    | `wide_learning_rate` | FTRL rate, log-uniform in [1e-3, 0.5] | `OptimizerConfig` |
    | `wide_l1` | FTRL L1 in {0, 1e-5, 1e-4, 1e-3, 1e-2} | `OptimizerConfig` |
    | `wide_l2` | FTRL L2 in {0, 1e-4, 1e-3, 1e-2, 0.1} | `OptimizerConfig` |
    | `wide_initial_accumulator` | FTRL accumulator, log-uniform in [1e-6, 1] | `OptimizerConfig` |
    | `deep_learning_rate` | Adagrad rate, log-uniform in [1e-3, 0.5] | `OptimizerConfig` |
    | `deep_initial_accumulator` | Adagrad accumulator, log-uniform in [1e-6, 1] | `OptimizerConfig` |
    | `embedding_dim` | {0, 4, 8, 16, 32}; 0 keeps the schema's widths (DFN: {4, 8, 16, 32}) | 0 (DFN: 8) |
    | `hidden_units` | `HIDDEN_UNITS_CHOICES` | "128,64" |
    | `dropout` | {0, 0.1, ..., 0.5} | the builder's |

    DFN adds `num_heads` {1, 2, 4, 8} (default 2), `sequence_length` (the
    schema's `max_length` and the `SEQUENCE_LENGTH_LADDER` values below it;
    default `max_length`), `pooling` {target, mean, sum, max} (default target) and
    `dislike_weight`, the loss weight of disliked impressions, log-uniform in
    [1, 30] (default 10; unclicks and clicks weigh 1).

    `build(hp)` returns a `WideDeepModel` compiled by
    `widedeep.training.compile_model` with an FTRL and an Adagrad made from `hp`
    (and AUC / log-loss metrics); `fit` adds `val_gauc` (`widedeep.callbacks.ValidationGAUC`),
    so the tuner's objective may be `val_auc` or `val_gauc`.
    `fit(hp, model, **kwargs)` trains on `data` with the trial's loss weights;
    each `keras.callbacks.TensorBoard` among the callbacks also gets a
    `widedeep.callbacks.OptimizerLogger` writing both optimizers' learning rates
    next to it.

    Args:
        schema: the dataset's `Schema`.
        model: one of `TUNABLE_MODELS`.
        data: where `fit` reads its data; required by `fit` only.
        name: the hypermodel's name.
        tunable: whether the hyper-parameters may be searched (KerasTuner).

    Example:

    ```python
    schema, _ = load_dataset_dir("data/sim")
    hypermodel = get_hypermodel("dfn", schema, data=TrialData.from_dataset_dir("data/sim"))
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=keras_tuner.Objective("val_auc", "max"), max_trials=10
    )
    tuner.search(epochs=3)
    ```
    """

    def __init__(
        self,
        schema: Schema,
        model: str = "wide_deep",
        data: TrialData | None = None,
        name: str | None = None,
        tunable: bool = True,
    ) -> None:
        if model not in TUNABLE_MODELS:
            raise ValueError(f"`model` must be one of {TUNABLE_MODELS}. Received: model={model!r}")
        super().__init__(name=name or model, tunable=tunable)
        self.schema = schema
        self.model_name = model
        self.data = data

    # ------------------------------------------------------------ the space
    def optimizer_config(self, hp: kt.HyperParameters) -> OptimizerConfig:
        """The FTRL and Adagrad settings of `hp` (declaring them on first use)."""
        d = _OPTIMIZER_DEFAULTS
        return OptimizerConfig(
            wide_learning_rate=hp.Float(
                "wide_learning_rate", 1e-3, 0.5, sampling="log", default=d.wide_learning_rate
            ),
            wide_l1=hp.Choice(
                "wide_l1", [0.0, 1e-5, 1e-4, 1e-3, 1e-2], ordered=True, default=d.wide_l1
            ),
            wide_l2=hp.Choice(
                "wide_l2", [0.0, 1e-4, 1e-3, 1e-2, 0.1], ordered=True, default=d.wide_l2
            ),
            wide_initial_accumulator=_accumulator(hp, "wide_initial_accumulator"),
            deep_learning_rate=hp.Float(
                "deep_learning_rate", 1e-3, 0.5, sampling="log", default=d.deep_learning_rate
            ),
            deep_initial_accumulator=_accumulator(hp, "deep_initial_accumulator"),
        )

    def model_hyperparameters(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """The builder keywords of `hp` (what `widedeep train` takes as model flags)."""
        builder = build_dfn if self.model_name == "dfn" else build_wide_deep
        if self.model_name == "dfn":
            embedding_dim = hp.Choice(
                "embedding_dim", [4, 8, 16, 32], default=_builder_default(builder, "embedding_dim")
            )
        else:
            # 0 stands for None: every feature keeps the width its schema declares.
            embedding_dim = hp.Choice("embedding_dim", [0, 4, 8, 16, 32], default=0)
        hidden_units = hp.Choice(
            "hidden_units",
            list(HIDDEN_UNITS_CHOICES),
            default=_units_string(_builder_default(builder, "hidden_units")),
        )
        values: dict[str, Any] = {
            "hidden_units": [int(u) for u in hidden_units.split(",")],
            "dropout": hp.Float(
                "dropout", 0.0, 0.5, step=0.1, default=_builder_default(builder, "dropout")
            ),
        }
        if embedding_dim:
            values["embedding_dim"] = embedding_dim
        if self.model_name == "dfn":
            max_length = self._max_sequence_length()
            lengths = [v for v in SEQUENCE_LENGTH_LADDER if v < max_length] + [max_length]
            values["num_heads"] = hp.Choice(
                "num_heads", [1, 2, 4, 8], default=DFN_DEFAULTS["num_heads"]
            )
            values["sequence_length"] = hp.Choice(
                "sequence_length", lengths, default=DFN_DEFAULTS["sequence_length"] or max_length
            )
            values["pooling"] = hp.Choice(
                "pooling", ["target", "mean", "sum", "max"], default=DFN_DEFAULTS["pooling"]
            )
        return values

    def feedback_weights(self, hp: kt.HyperParameters) -> tuple[float, float, float] | None:
        """Loss weights `(unclick, click, dislike)` of `hp`; None (all 1) for Wide & Deep."""
        defaults = DEFAULT_FEEDBACK_WEIGHTS.get(self.model_name)
        if self.model_name != "dfn":
            return defaults
        unclick, click, dislike = defaults
        weight = hp.Float("dislike_weight", 1.0, 30.0, sampling="log", default=dislike)
        return (unclick, click, weight)

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        self.optimizer_config(hp)
        self.model_hyperparameters(hp)
        self.feedback_weights(hp)

    def _max_sequence_length(self) -> int:
        return min(self.schema.sequence(name).max_length for name in FEEDBACK_SEQUENCES)

    # ------------------------------------------------------ build and fit
    def build(self, hp: kt.HyperParameters) -> WideDeepModel:
        """A model compiled with the FTRL / Adagrad settings of `hp`."""
        optimizer = self.optimizer_config(hp)
        hyperparameters = self.model_hyperparameters(hp)
        # Declared here too, so the oracle sees the whole space before the first fit.
        self.feedback_weights(hp)
        model = build_model(self.schema, self.model_name, **hyperparameters)
        return compile_model(model, optimizer)

    def fit(self, hp: kt.HyperParameters, model: WideDeepModel, *args: Any, **kwargs: Any) -> Any:
        """Trains `model` on `data` with the loss weights of `hp`; other keywords go to `model.fit`.

        Returns:
            The `History` of `model.fit`.

        Raises:
            ValueError: if the hypermodel has no `data`.
            TypeError: if data is passed in: it comes from `data`, weighted per trial.
        """
        passed = [k for k in ("x", "y", "validation_data", "sample_weight") if k in kwargs]
        if args or passed:
            raise TypeError(
                "CTRHyperModel.fit builds each trial's datasets from `data` (with the trial's "
                f"loss weights); do not pass data to `search`. Received: {len(args)} positional "
                f"arguments, keywords {passed}"
            )
        if self.data is None:
            raise ValueError("CTRHyperModel.fit needs `data` (a `TrialData`); received data=None")
        train_ds, valid_ds = self.data.datasets(self.schema, self.feedback_weights(hp))
        # First, so that the tuner's own callbacks and `History` see `val_gauc` too.
        callbacks = [ValidationGAUC(valid_ds, self.schema.group_key)]
        callbacks += list(kwargs.pop("callbacks", None) or [])
        callbacks += [
            OptimizerLogger(callback.log_dir)
            for callback in callbacks
            if isinstance(callback, keras.callbacks.TensorBoard)
        ]
        # The training pipeline shuffles itself; Keras would only warn about `shuffle=True`.
        kwargs.setdefault("shuffle", False)
        return model.fit(train_ds, validation_data=valid_ds, callbacks=callbacks, **kwargs)

    def describe(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """`hp` as `widedeep train` settings: builder keywords, optimizers, loss weights."""
        return {
            "model": self.model_name,
            "hyperparameters": self.model_hyperparameters(hp),
            "optimizer": dataclasses.asdict(self.optimizer_config(hp)),
            "feedback_weights": self.feedback_weights(hp),
        }


class WideDeepHyperModel(CTRHyperModel):
    """`CTRHyperModel` of Wide & Deep (`model="wide_deep"`)."""

    def __init__(self, schema: Schema, data: TrialData | None = None, **kwargs: Any) -> None:
        super().__init__(schema, "wide_deep", data, **kwargs)


class DFNHyperModel(CTRHyperModel):
    """`CTRHyperModel` of the Deep Feedback Network (`model="dfn"`), with the DFN space."""

    def __init__(self, schema: Schema, data: TrialData | None = None, **kwargs: Any) -> None:
        super().__init__(schema, "dfn", data, **kwargs)


def get_hypermodel(model: str, schema: Schema, data: TrialData | None = None) -> CTRHyperModel:
    """The hypermodel of `model` (one of `TUNABLE_MODELS`)."""
    if model == "dfn":
        return DFNHyperModel(schema, data)
    if model == "wide_deep":
        return WideDeepHyperModel(schema, data)
    raise ValueError(f"`model` must be one of {TUNABLE_MODELS}. Received: model={model!r}")
