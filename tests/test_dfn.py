"""DFN as a whole model: routing, weighted loss, ablations, save/load/continue."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest

from tests.conftest import optimizer_slots
from widedeep import optimizers as wd_optimizers
from widedeep.layers import TakeMostRecent
from widedeep.models.dfn import DFN_DEFAULTS, build_dfn
from widedeep.training import PAPER_FEEDBACK_WEIGHTS


def _dfn(schema, **hp):
    keras.utils.set_random_seed(3)
    hp = {"dropout": 0.0, **hp}  # deterministic steps: a .keras file keeps no dropout seed state
    model = build_dfn(schema, embedding_dim=4, hidden_units=(8,), model_dim=8, num_heads=2, **hp)
    model.compile(
        wide_optimizer=wd_optimizers.Ftrl(learning_rate=0.05, l1_regularization_strength=1e-3),
        deep_optimizer=wd_optimizers.Adagrad(learning_rate=0.05),
    )
    return model


def test_feedback_module_trains_with_adagrad_and_wide_with_ftrl(tiny_schema):
    model = _dfn(tiny_schema)
    feedback_paths = {v.path for v in model.get_layer("feedback").trainable_variables}
    fm_paths = {v.path for v in model.get_layer("fm_logit").trainable_variables}
    wide_paths = {v.path for v in model.get_layer("wide").trainable_variables}
    assert feedback_paths and fm_paths and wide_paths
    deep_optimizer_paths = set(optimizer_slots(model.deep_optimizer, model.trainable_variables))
    wide_optimizer_paths = set(optimizer_slots(model.wide_optimizer, model.trainable_variables))
    assert feedback_paths | fm_paths <= deep_optimizer_paths
    assert wide_optimizer_paths == wide_paths
    assert not deep_optimizer_paths & wide_optimizer_paths


def test_one_step_changes_every_branch(tiny_schema, tiny_batch):
    x, y = tiny_batch
    model = _dfn(tiny_schema)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    model.train_on_batch(x, y)
    for layer in ("wide", "feedback", "fm_logit", "deep"):
        changed = [
            v.path
            for v in model.get_layer(layer).trainable_variables
            if not np.array_equal(before[v.path], v.numpy())
        ]
        assert changed, f"no variable of '{layer}' moved after one step"


def test_dislike_counts_ten_times_in_the_loss(tiny_schema, tiny_batch):
    x, y = tiny_batch
    model = _dfn(tiny_schema)
    weights_by_type = np.asarray(PAPER_FEEDBACK_WEIGHTS)  # `--loss-weights 1,1,10`
    assert list(weights_by_type) == [1.0, 1.0, 10.0]
    feedback = np.where(y == 1, 1, 0)
    feedback[:5] = np.where(y[:5] == 0, 2, 1)  # some dislikes
    sample_weight = weights_by_type[feedback]
    p = np.clip(model.predict(x, verbose=0).reshape(-1).astype(np.float64), 1e-7, 1 - 1e-7)
    per_example = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    expected = np.sum(sample_weight * per_example) / len(y)
    loss = model.evaluate(
        x, y, sample_weight=sample_weight, batch_size=len(y), verbose=0, return_dict=True
    )["loss"]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # The same loss as repeating a disliked impression ten times in the sum.
    repeated = np.concatenate([per_example] + [per_example[feedback == 2]] * 9)
    np.testing.assert_allclose(loss, repeated.sum() / len(y), rtol=1e-5)


@pytest.mark.parametrize(
    "switch",
    [
        "use_click_transformer",
        "use_unclick_transformer",
        "use_dislike_transformer",
        "use_click_aware_attention",
        "use_fm",
        "use_wide",
    ],
)
def test_ablation_switches_remove_their_part(tiny_schema, tiny_batch, switch):
    x, y = tiny_batch
    assert DFN_DEFAULTS[switch] is True
    full = _dfn(tiny_schema)
    full.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)  # fm_logit leaves 0
    ablated = _dfn(tiny_schema, **{switch: False})
    assert ablated.count_params() < full.count_params()
    names = {layer.name for layer in ablated.layers}
    if switch in ("use_fm", "use_wide"):
        part = {"use_fm": "fm_logit", "use_wide": "wide"}[switch]
        assert part not in names and (switch != "use_wide" or ablated.wide_variables == [])
        # The ablated model is the full one without that logit: with the full model's
        # weights, it predicts what the full model predicts once that branch is zeroed.
        for layer in ablated.layers:
            if layer.weights:
                layer.set_weights(full.get_layer(layer.name).get_weights())
        before = full.predict(x, verbose=0)
        for v in full.get_layer(part).weights:
            v.assign(np.zeros(v.shape, v.dtype))
        after = full.predict(x, verbose=0)
        assert np.abs(before - after).max() > 1e-4  # the branch did contribute
        np.testing.assert_allclose(ablated.predict(x, verbose=0), after, rtol=1e-5, atol=1e-6)
        return

    # Feedback switches: blocks [f_c; f_u; f_d; f_cu; f_du] of model_dim 8 each.
    def blocks(model, inputs):
        feedback = keras.Model(model.inputs, model.get_layer("feedback").output)
        out = np.asarray(feedback(inputs))
        return np.split(out, out.shape[1] // 8, axis=1)

    if switch == "use_click_aware_attention":
        assert len(blocks(full, x)) == 5 and len(blocks(ablated, x)) == 3
        return
    # Without its Transformer a sequence's block is the masked mean of its items: the
    # target item no longer enters it (with the Transformer it attends from the target).
    index = ("click", "unclick", "dislike").index(switch.split("_")[1])
    for model in (full, ablated):  # open the residual gates: the Transformers count
        for gate in model.get_layer("feedback").gates.values():
            gate.assign(np.ones(gate.shape))
    other_target = {**x, "item_id": (x["item_id"] + 1) % 20, "category": x["category"] + 1}
    assert not np.allclose(blocks(full, x)[index], blocks(full, other_target)[index])
    np.testing.assert_allclose(
        blocks(ablated, x)[index], blocks(ablated, other_target)[index], atol=1e-6
    )
    for i in {0, 1, 2} - {index}:  # the other sequences keep theirs
        assert not np.allclose(blocks(ablated, x)[i], blocks(ablated, other_target)[i])


def test_sequence_length_keeps_most_recent_items(tiny_schema, tiny_batch):
    x, _ = tiny_batch
    # The candidate's share of each history reads the whole sequences (tests/test_history.py).
    model = _dfn(tiny_schema, sequence_length=2, use_candidate_history=False)
    changed = {k: v.copy() for k, v in x.items()}
    for seq in ("click", "unclick", "dislike"):
        changed[f"{seq}_item_id"][:, 2:] = np.where(x[f"{seq}_item_id"][:, 2:] >= 0, 3, -1)
    np.testing.assert_allclose(
        model.predict(changed, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    changed["click_item_id"][:, 0] = 7
    assert not np.allclose(model.predict(changed, verbose=0), model.predict(x, verbose=0))


def test_a_model_saved_when_take_most_recent_was_take_first_still_loads(
    tiny_schema, tiny_batch, tmp_path
):
    x, _ = tiny_batch
    model = _dfn(tiny_schema, sequence_length=2)
    model.save(tmp_path / "new.keras")
    # The same file as the layer's former name and module wrote it.
    with (
        zipfile.ZipFile(tmp_path / "new.keras") as new,
        zipfile.ZipFile(tmp_path / "old.keras", "w") as old,
    ):
        for item in new.infolist():
            data = new.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                layers = [
                    layer
                    for layer in config["config"]["layers"]
                    if layer["registered_name"] == "widedeep>TakeMostRecent"
                ]
                assert len(layers) == 6  # the items and the mask of three sequences
                for layer in layers:
                    layer.update(
                        module="widedeep.layers.take_first",
                        class_name="TakeFirst",
                        registered_name="widedeep>TakeFirst",
                    )
                data = json.dumps(config)
            old.writestr(item, data)
    reloaded = keras.models.load_model(tmp_path / "old.keras")
    for name in ("click_recent", "dislike_recent_mask"):
        layer = reloaded.get_layer(name)
        assert type(layer) is TakeMostRecent and layer.length == 2
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_empty_feedback_reads_as_no_feedback(tiny_schema, tiny_batch):
    """Without feedback, f_Feed and the candidate's shares of the histories are zero: the
    prediction is the other features' alone, whatever the feedback module's weights, and
    a row without feedback reads the same beside rows that have some."""
    x, _ = tiny_batch
    model = _dfn(tiny_schema)
    feedback = model.get_layer("feedback")
    rng = np.random.default_rng(0)
    for gate in feedback.gates.values():  # open the residual gates: every term counts
        gate.assign(rng.normal(size=gate.shape))
    sequences = ("click_", "unclick_", "dislike_")
    empty = {k: (np.full_like(v, -1) if k.startswith(sequences) else v) for k, v in x.items()}
    parts = keras.Model(
        model.inputs, [feedback.output, model.get_layer("candidate_history").output]
    )
    f_feed, shares = (np.asarray(p) for p in parts(empty))
    assert f_feed.shape == (64, 40) and shares.shape == (64, 6)
    np.testing.assert_array_equal(f_feed, 0.0)
    np.testing.assert_array_equal(shares, 0.0)
    predictions = model.predict(empty, verbose=0)
    assert np.all((predictions > 0) & (predictions < 1))
    # Any other weights of the module and of its projection into the FM: the same predictions,
    # while the predictions of rows with feedback move.
    with_feedback = model.predict(x, verbose=0)
    for layer in (feedback, model.get_layer("feedback_to_fm")):
        for v in layer.weights:
            v.assign(rng.normal(size=v.shape))
    np.testing.assert_allclose(model.predict(empty, verbose=0), predictions, rtol=0, atol=1e-7)
    assert not np.allclose(model.predict(x, verbose=0), with_feedback, atol=1e-4)
    # Rows 0-31 without feedback, in one batch with rows that have some.
    mixed = {k: np.concatenate([empty[k][:32], x[k][32:]]) for k in x}
    np.testing.assert_allclose(
        model.predict(mixed, batch_size=64, verbose=0)[:32], predictions[:32], atol=1e-6
    )


def test_dfn_save_load_continue_is_exact(tiny_schema, tiny_batch, tmp_path):
    x, y = tiny_batch
    straight = _dfn(tiny_schema)
    straight.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    first = _dfn(tiny_schema)
    first.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    first.save(tmp_path / "dfn.keras")
    reloaded = keras.models.load_model(tmp_path / "dfn.keras")
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), first.predict(x, verbose=0))
    reloaded.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(straight.weights, reloaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


def test_build_dfn_needs_the_three_sequences(tiny_schema):
    tiny_schema.sequences = tiny_schema.sequences[:2]
    with pytest.raises(ValueError, match="dislike"):
        build_dfn(tiny_schema)


def test_unknown_hyperparameter_is_named(tiny_schema):
    with pytest.raises(ValueError, match="use_gru"):
        build_dfn(tiny_schema, use_gru=True)
