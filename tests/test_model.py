"""WideDeepModel: optimizer routing, numpy oracles of one step, save/load/continue, inputs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import widedeep
from tests.conftest import optimizer_slots
from widedeep import optimizers as wd_optimizers
from widedeep.models.wide_deep import build_wide_deep
from widedeep.training import build_model


def _compiled(schema, branches="wide_deep", **hp):
    keras.utils.set_random_seed(1)
    hp = {"dropout": 0.0, **hp}  # deterministic steps for the numpy oracles
    model = build_wide_deep(schema, branches=branches, hidden_units=(8,), **hp)
    model.compile(  # accumulators at 0.1, as in the numpy oracles
        wide_optimizer=wd_optimizers.Ftrl(
            learning_rate=0.1,
            l1_regularization_strength=0.01,
            l2_regularization_strength=0.02,
            initial_accumulator_value=0.1,
        ),
        deep_optimizer=wd_optimizers.Adagrad(learning_rate=0.05, initial_accumulator_value=0.1),
    )
    return model


def _numpy_ftrl(var, grad, accum, linear, lr, l1, l2):
    new_accum = accum + grad**2
    linear = linear + grad - (np.sqrt(new_accum) - np.sqrt(accum)) / lr * var
    quadratic = np.sqrt(new_accum) / lr + 2 * l2
    new_var = (np.clip(linear, -l1, l1) - linear) / quadratic
    return new_var, new_accum, linear


def _numpy_adagrad(var, grad, accum, lr, eps=1e-7):
    accum = accum + grad**2
    return var - lr * grad / np.sqrt(accum + eps), accum


def test_one_step_equals_numpy_ftrl_and_adagrad(tiny_schema, tiny_batch):
    x, y = tiny_batch
    model = _compiled(tiny_schema)
    wide_vars, deep_vars = model.wide_variables, model.deep_variables
    before = {v.path: v.numpy().copy() for v in wide_vars + deep_vars}
    with tf.GradientTape() as tape:
        loss = keras.losses.binary_crossentropy(y[:, None], model(x, training=True))
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, wide_vars + deep_vars)
    grads = {v.path: tf.convert_to_tensor(g).numpy() for v, g in zip(wide_vars + deep_vars, grads)}

    model.train_on_batch(x, y)

    touched_wide_rows = 0
    for v in wide_vars:
        expected, _, _ = _numpy_ftrl(
            before[v.path], grads[v.path], np.full_like(before[v.path], 0.1), 0.0, 0.1, 0.01, 0.02
        )
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=v.path)
        touched_wide_rows += int(np.count_nonzero(grads[v.path]))
    assert touched_wide_rows > 0
    for v in deep_vars:
        expected, _ = _numpy_adagrad(
            before[v.path], grads[v.path], np.full_like(before[v.path], 0.1), 0.05
        )
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=v.path)


def test_each_optimizer_holds_slots_for_its_own_group_only(tiny_schema):
    model = _compiled(tiny_schema)
    wide_paths = {v.path for v in model.wide_variables}
    deep_paths = {v.path for v in model.deep_variables}
    assert wide_paths and deep_paths and not wide_paths & deep_paths
    wide_slots = optimizer_slots(model.wide_optimizer, model.trainable_variables)
    deep_slots = optimizer_slots(model.deep_optimizer, model.trainable_variables)
    assert set(wide_slots) == wide_paths
    assert set(deep_slots) == deep_paths
    # FTRL keeps an accumulator and a linear slot per variable, Adagrad an accumulator,
    # each of its variable's shape.
    shapes = {v.path: tuple(v.shape) for v in model.trainable_variables}
    for slots, names in ((wide_slots, {"accumulator", "linear"}), (deep_slots, {"accumulator"})):
        for path, by_name in slots.items():
            assert set(by_name) == names, path
            assert all(tuple(slot.shape) == shapes[path] for slot in by_name.values()), path
    assert model.optimizer is model.deep_optimizer


@pytest.mark.parametrize("branches", ["wide", "deep"])
def test_single_branch_models_route_everything_to_one_optimizer(tiny_schema, tiny_batch, branches):
    x, y = tiny_batch
    model = _compiled(tiny_schema, branches=branches)
    if branches == "wide":
        assert model.deep_variables == [] and model.wide_variables
    else:
        assert model.wide_variables == [] and model.deep_variables
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    used = model.wide_optimizer if branches == "wide" else model.deep_optimizer
    idle = model.deep_optimizer if branches == "wide" else model.wide_optimizer
    assert int(used.iterations.numpy()) == 4
    assert int(idle.iterations.numpy()) == 0


def test_compile_rejects_single_optimizer(tiny_schema):
    model = build_wide_deep(tiny_schema)
    with pytest.raises(ValueError, match="wide_optimizer"):
        model.compile(optimizer="adam")


def test_save_load_continue_is_exact(tiny_schema, tiny_batch, tmp_path):
    x, y = tiny_batch
    straight = _compiled(tiny_schema)
    straight.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)

    first = _compiled(tiny_schema)
    first.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    path = tmp_path / "model.keras"
    first.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, widedeep.models.two_optimizer_model.WideDeepModel)
    assert isinstance(reloaded.wide_optimizer, wd_optimizers.Ftrl)
    assert int(reloaded.wide_optimizer.iterations.numpy()) == 4
    assert int(reloaded.deep_optimizer.iterations.numpy()) == 4
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), first.predict(x, verbose=0), atol=0)
    reloaded.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    for a, b in zip(straight.weights, reloaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)
    for opt in ("wide_optimizer", "deep_optimizer"):
        for a, b in zip(getattr(straight, opt).variables, getattr(reloaded, opt).variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)


def test_unknown_categories_share_the_oov_bucket(tiny_schema):
    model = _compiled(tiny_schema)
    lookup = model.get_layer("lookup_user_id")
    ids = lookup(np.array([0, 9, 10, 12345, -1])).numpy()
    assert ids[2] == ids[3] == ids[4] == 0  # OOV index
    assert len(set(ids[:2])) == 2 and 0 not in ids[:2]
    city = model.get_layer("lookup_city")(np.array(["paris", "oslo", ""], dtype=object)).numpy()
    assert city[1] == city[2] == 0 and city[0] != 0


def test_unknown_ids_predict_alike(tiny_schema, tiny_batch):
    x, _ = tiny_batch
    model = _compiled(tiny_schema)
    a = {k: v[:1].copy() for k, v in x.items()}
    b = {k: v[:1].copy() for k, v in x.items()}
    a["user_id"][:] = 777
    b["user_id"][:] = 10**9
    np.testing.assert_allclose(model.predict(a, verbose=0), model.predict(b, verbose=0))


def test_missing_feature_is_named(tiny_schema, tiny_batch):
    x, _ = tiny_batch
    model = _compiled(tiny_schema)
    x = dict(x)
    del x["price"]
    with pytest.raises(ValueError, match=r"(?i)missing .*price"):
        model.predict(x, verbose=0)
    with pytest.raises(ValueError, match=r"(?i)missing .*price"):
        model(x)


def test_extra_keys_are_ignored(tiny_schema, tiny_batch):
    x, _ = tiny_batch
    model = _compiled(tiny_schema)
    with_extra = {
        **x,
        "label": np.zeros(len(x["price"])),
        "true_probability": np.zeros(len(x["price"])),
    }
    np.testing.assert_allclose(model.predict(with_extra, verbose=0), model.predict(x, verbose=0))


def test_empty_sequences_pool_to_zero(tiny_schema, tiny_batch):
    x, _ = tiny_batch
    model = build_model(tiny_schema, "wide_deep_seq", hidden_units=(8,))
    empty = {
        k: (np.full_like(v, -1) if k.startswith(("click_", "unclick_", "dislike_")) else v)
        for k, v in x.items()
    }
    pooled = keras.Model(model.inputs, model.get_layer("click_mean").output)(empty)
    np.testing.assert_array_equal(pooled.numpy(), 0.0)
    assert np.isfinite(model.predict(empty, verbose=0)).all()


def test_callbacks_work(tiny_schema, tiny_batch, tmp_path):
    x, y = tiny_batch
    model = _compiled(tiny_schema)
    ckpt = tmp_path / "best.keras"
    # Validating on the flipped labels: the better the fit to `y`, the worse `val_loss`, so
    # the first epoch is the best one and patience=1 must stop training after the second.
    history = model.fit(
        x,
        y,
        validation_data=(x, 1 - y),
        batch_size=16,
        epochs=5,
        shuffle=False,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=1),
            keras.callbacks.ModelCheckpoint(ckpt, monitor="val_loss", save_best_only=True),
            keras.callbacks.TensorBoard(tmp_path / "tb", histogram_freq=1),
            keras.callbacks.ReduceLROnPlateau(
                monitor="loss", factor=0.5, patience=0, min_delta=10.0
            ),
        ],
    )
    loss, val_loss = history.history["loss"], history.history["val_loss"]
    assert loss[1] < loss[0] and val_loss[1] > val_loss[0]  # it learns y, so unlearns 1 - y
    assert len(loss) == 2
    # The checkpoint holds the best (first) epoch: 4 steps of each optimizer, its val_loss.
    best = keras.models.load_model(ckpt)
    assert int(best.wide_optimizer.iterations.numpy()) == 4
    assert int(best.deep_optimizer.iterations.numpy()) == 4
    restored = best.evaluate(x, 1 - y, batch_size=16, verbose=0, return_dict=True)["loss"]
    assert restored == pytest.approx(val_loss[0], rel=1e-5)
    assert int(model.deep_optimizer.iterations.numpy()) == 8
    assert os.listdir(tmp_path / "tb")
    # ReduceLROnPlateau acts on `model.optimizer`, the deep optimizer.
    assert float(model.deep_optimizer.learning_rate.numpy()) < 0.05


def test_backup_and_restore_resumes_exactly(tiny_schema, tiny_batch, tmp_path):
    x, y = tiny_batch
    straight = _compiled(tiny_schema)
    straight.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    interrupted = _compiled(tiny_schema)
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted.fit(
            x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[backup, Interrupt()]
        )
    resumed = _compiled(tiny_schema)
    resumed.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[backup])
    assert int(resumed.deep_optimizer.iterations.numpy()) == 12
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    sys.path.insert(0, sys.argv[1])
    from tests.conftest import make_batch, make_tiny_schema
    from tests.test_model import _compiled
    x, y = make_batch(64)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    single = _compiled(make_tiny_schema())
    h1 = single.fit(ds, epochs=2, verbose=0).history["loss"]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = _compiled(make_tiny_schema())
    h2 = mirrored.fit(ds, epochs=2, verbose=0).history["loss"]
    diff = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(single.weights, mirrored.weights))
    print(json.dumps({"single": h1, "mirrored": h2, "replicas": strategy.num_replicas_in_sync, "weight_diff": diff,
                      "steps_per_execution": [single.steps_per_execution, mirrored.steps_per_execution]}))
    """
)


def test_mirrored_strategy_loss_equals_single_device():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT, root],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    # compile's default: several steps per execution on one replica, one with two.
    assert result["steps_per_execution"][0] > 1 and result["steps_per_execution"][1] == 1
    np.testing.assert_allclose(result["mirrored"], result["single"], rtol=1e-5)
    assert result["weight_diff"] < 1e-5


def test_compile_runs_several_steps_per_execution_on_one_replica(tiny_schema):
    from widedeep.models.two_optimizer_model import DEFAULT_STEPS_PER_EXECUTION

    model = build_wide_deep(tiny_schema, hidden_units=(8,))
    model.compile()
    assert model.steps_per_execution == DEFAULT_STEPS_PER_EXECUTION > 1
    assert model.get_compile_config()["steps_per_execution"] == DEFAULT_STEPS_PER_EXECUTION
    model.compile(steps_per_execution=1)
    assert model.steps_per_execution == 1
