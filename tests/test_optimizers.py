"""Sparse-aware FTRL / Adagrad: equal to the stock dense update, touching only the rows in the batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import optimizer_slots
from widedeep import optimizers
from widedeep.layers.embedding import Embedding

ROWS, DIM = 50, 3
TOUCHABLE = 30  # batches draw ids from rows [0, 30): rows [30, 50) are never touched
FTRL_REGULARISED = {
    "learning_rate": 0.05,
    "l1_regularization_strength": 0.01,
    "l2_regularization_strength": 0.02,
    "beta": 0.3,
    "learning_rate_power": -0.6,
    "initial_accumulator_value": 0.2,
}


def _stock_twin(optimizer: keras.Optimizer) -> keras.Optimizer:
    """The stock Keras optimizer at `optimizer`'s settings (ours default to the project's values)."""
    stock_cls = (
        keras.optimizers.Ftrl
        if isinstance(optimizer, optimizers.Ftrl)
        else keras.optimizers.Adagrad
    )
    return stock_cls.from_config(optimizer.get_config())


def _batches(
    steps: int = 20, seed: int = 0, fixed_ids: bool = False
) -> list[tuple[tf.Tensor, tf.Tensor]]:
    """(ids, coefficients) pairs; ids of shape (8, 6) with repeats. Loss: sum(emb(ids) * coefficients)."""
    rng = np.random.default_rng(seed)
    base = np.concatenate([np.arange(TOUCHABLE), rng.integers(0, TOUCHABLE, 18)])
    batches = []
    for _ in range(steps):
        ids = rng.permutation(base) if fixed_ids else rng.integers(0, TOUCHABLE, 48)
        coefficients = 0.1 * rng.normal(size=(8, 6, DIM)).astype("float32")
        batches.append((tf.constant(ids.reshape(8, 6), tf.int64), tf.constant(coefficients)))
    return batches


def _initial_table(init: str, seed: int = 1) -> np.ndarray:
    if init == "zeros":
        return np.zeros((ROWS, DIM), "float32")
    return np.random.default_rng(seed).normal(size=(ROWS, DIM)).astype("float32")


def _train(
    optimizer: keras.Optimizer,
    batches: list[tuple[tf.Tensor, tf.Tensor]],
    initial: np.ndarray,
    sparse: bool,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Runs the batches in a tf.function; returns the table and the optimizer's slot values."""
    layer = (Embedding if sparse else keras.layers.Embedding)(ROWS, DIM)
    layer.build()
    layer.set_weights([initial])
    variables = layer.trainable_variables

    @tf.function
    def step(ids: tf.Tensor, coefficients: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(ids) * coefficients)
        (grad,) = tape.gradient(loss, variables)
        assert isinstance(grad, tf.IndexedSlices)
        if not sparse:  # the stock optimizer on the stock dense path
            grad = tf.convert_to_tensor(grad)
        optimizer.apply([grad], variables)

    for ids, coefficients in batches:
        step(ids, coefficients)
    slots = optimizer_slots(optimizer, variables)[layer.embeddings.path]
    return layer.embeddings.numpy(), [slot.numpy() for slot in slots.values()]


def _ftrl_numpy_step(w, n, z, rows, grads, lr, l1, l2, l2_shrinkage, beta, lr_power):
    """FTRL-Proximal (McMahan et al. 2013, Algorithm 1) with Keras' conventions for l2 and shrinkage."""
    w, n, z = w.copy(), n.copy(), z.copy()
    g = np.zeros_like(w)
    np.add.at(g, rows, grads)
    for i in np.unique(rows):
        g_i = g[i] + 2 * l2_shrinkage * w[i]
        n_new = n[i] + g[i] ** 2
        sigma = (n_new ** (-lr_power) - n[i] ** (-lr_power)) / lr
        z[i] = z[i] + g_i - sigma * w[i]
        denominator = (beta + n_new ** (-lr_power)) / lr + 2 * l2
        w[i] = np.where(np.abs(z[i]) <= l1, 0.0, (np.sign(z[i]) * l1 - z[i]) / denominator)
        n[i] = n_new
    return w, n, z


def test_ftrl_one_step_equals_numpy_ftrl_proximal():
    hyper = {"lr": 0.1, "l1": 0.05, "l2": 0.2, "l2_shrinkage": 0.1, "beta": 0.5, "lr_power": -0.5}
    w0 = np.array([[0.3, -0.2], [0.0, 0.0], [0.01, 0.5], [1.0, -1.0]], "float32")
    n0 = np.full_like(w0, 0.1)
    z0 = np.zeros_like(w0)
    rows = np.array([2, 0, 2])
    grads = np.array([[0.5, -1.0], [0.02, 2.0], [0.25, 0.1]], "float32")
    table = keras.Variable(w0)
    optimizer = optimizers.Ftrl(
        learning_rate=hyper["lr"],
        l1_regularization_strength=hyper["l1"],
        l2_regularization_strength=hyper["l2"],
        l2_shrinkage_regularization_strength=hyper["l2_shrinkage"],
        beta=hyper["beta"],
        learning_rate_power=hyper["lr_power"],
        initial_accumulator_value=0.1,
    )
    grad = tf.IndexedSlices(tf.constant(grads), tf.constant(rows), tf.constant(w0.shape))
    optimizer.apply([grad], [table])

    w, n, z = _ftrl_numpy_step(w0, n0, z0, rows, grads, **hyper)
    np.testing.assert_allclose(table.numpy(), w, atol=1e-6)
    slots = optimizer_slots(optimizer, [table])[table.path]
    np.testing.assert_allclose(slots["accumulator"].numpy(), n, atol=1e-6)
    np.testing.assert_allclose(slots["linear"].numpy(), z, atol=1e-6)
    # Row 0, second coordinate: |z| = |2.0 + 2*0.1*(-0.2) - sigma*(-0.2)| > l1, so the weight moved;
    # rows 1 and 3 were not in the batch and keep their values.
    np.testing.assert_array_equal(table.numpy()[[1, 3]], w0[[1, 3]])


@pytest.mark.parametrize(
    ("name", "config", "init", "fixed_ids"),
    [
        ("ftrl_l1_l2_beta", FTRL_REGULARISED, "zeros", False),
        (
            "ftrl_shrinkage",
            {**FTRL_REGULARISED, "l2_shrinkage_regularization_strength": 0.05},
            "zeros",
            True,  # stock shrinks inactive rows too: compare on batches that touch every row each step
        ),
        ("ftrl_defaults", {"learning_rate": 0.05}, "zeros", False),
        ("adagrad", {"learning_rate": 0.1, "epsilon": 1e-3}, "normal", False),
        ("adagrad_defaults", {"learning_rate": 0.1}, "zeros", False),
    ],
)
def test_twenty_sparse_steps_equal_stock_dense(name, config, init, fixed_ids):
    ours = (optimizers.Ftrl if name.startswith("ftrl") else optimizers.Adagrad)(**config)
    batches = _batches(fixed_ids=fixed_ids)
    initial = _initial_table(init)
    stock_table, stock_slots = _train(_stock_twin(ours), batches, initial, sparse=False)
    table, slots = _train(ours, batches, initial, sparse=True)

    assert len(slots) == len(stock_slots) == (2 if name.startswith("ftrl") else 1)
    np.testing.assert_allclose(table, stock_table, atol=1e-6, rtol=0)
    for slot, stock_slot in zip(slots, stock_slots, strict=True):
        np.testing.assert_allclose(slot, stock_slot, atol=1e-6, rtol=0)
    assert not np.allclose(table, initial)  # the oracle is not vacuous


@pytest.mark.parametrize("optimizer_cls", [optimizers.Ftrl, optimizers.Adagrad])
def test_only_rows_in_the_batch_change(optimizer_cls):
    initial = _initial_table("zeros" if optimizer_cls is optimizers.Ftrl else "normal")
    optimizer = optimizer_cls(learning_rate=0.1)
    batches = _batches(steps=3)
    table, slots = _train(optimizer, batches, initial, sparse=True)
    touched = np.unique(np.concatenate([ids.numpy().ravel() for ids, _ in batches]))
    untouched = np.setdiff1d(np.arange(ROWS), touched)
    assert len(untouched) >= ROWS - TOUCHABLE
    np.testing.assert_array_equal(table[untouched], initial[untouched])
    initial_accumulator = np.float32(optimizer.initial_accumulator_value)
    np.testing.assert_array_equal(slots[0][untouched], initial_accumulator)
    for slot in slots[1:]:  # FTRL's linear
        np.testing.assert_array_equal(slot[untouched], 0.0)
    assert np.all(table[touched] != initial[touched])


def test_ftrl_non_zero_init_equals_stock_on_touched_rows_and_keeps_the_others():
    # Stock FTRL recomputes every row from its slots, so on the first step it sets every row outside
    # the batch of a non-zero table to 0; ours leaves them alone. The rows of the first batch follow
    # the same formula in both, and stay equal afterwards (their weights are then consistent with
    # their slots). A row first touched later starts from its initial value here and from 0 in stock.
    initial = _initial_table("normal")
    batches = _batches(steps=5)
    table, slots = _train(optimizers.Ftrl(**FTRL_REGULARISED), batches, initial, sparse=True)
    stock_table, stock_slots = _train(
        keras.optimizers.Ftrl(**FTRL_REGULARISED), batches, initial, sparse=False
    )
    first_rows = np.unique(batches[0][0].numpy())
    later_rows = np.setdiff1d(
        np.unique(np.concatenate([b[0].numpy() for b in batches])), first_rows
    )
    never = np.arange(TOUCHABLE, ROWS)
    assert len(later_rows) > 0
    np.testing.assert_allclose(table[first_rows], stock_table[first_rows], atol=1e-6)
    for slot, stock_slot in zip(slots, stock_slots, strict=True):
        np.testing.assert_allclose(slot[first_rows], stock_slot[first_rows], atol=1e-6)
    assert not np.allclose(table[later_rows], stock_table[later_rows], atol=1e-3)
    np.testing.assert_array_equal(table[never], initial[never])
    np.testing.assert_array_equal(stock_table[never], 0.0)


@pytest.mark.parametrize("ours_cls", [optimizers.Ftrl, optimizers.Adagrad])
def test_learning_rate_schedule(ours_cls):
    def schedule() -> keras.optimizers.schedules.LearningRateSchedule:
        return keras.optimizers.schedules.ExponentialDecay(0.2, decay_steps=3, decay_rate=0.5)

    # Stock FTRL re-derives the weight of every previously touched row with the current rate, so it
    # equals the sparse update when every touched row is in every batch. Adagrad: any batches.
    batches = _batches(steps=10, fixed_ids=ours_cls is optimizers.Ftrl)
    initial = _initial_table("zeros")
    ours = ours_cls(learning_rate=schedule())
    stock_table, stock_slots = _train(_stock_twin(ours), batches, initial, sparse=False)
    table, slots = _train(ours, batches, initial, sparse=True)
    for slot, stock_slot in zip(slots, stock_slots, strict=True):
        np.testing.assert_allclose(slot, stock_slot, atol=1e-6, rtol=0)
    np.testing.assert_allclose(table, stock_table, atol=1e-6, rtol=0)
    assert not np.allclose(table, initial)


@pytest.mark.parametrize(
    "options",
    [
        {"loss_scale_factor": 8.0},
        {"global_clipnorm": 0.5},
        {"clipnorm": 0.3},
        {"clipvalue": 0.2},
    ],
)
@pytest.mark.parametrize("ours_cls", [optimizers.Ftrl, optimizers.Adagrad])
def test_apply_options_keep_gradients_sparse_and_equal_dense(ours_cls, options):
    seen: list[str] = []

    class Probe(ours_cls):
        def update_step(self, gradient, variable, learning_rate):
            seen.append(type(gradient).__name__)
            return super().update_step(gradient, variable, learning_rate)

    # Repeated ids: per-slice clipping would differ from clipping the summed (dense) gradient.
    rows = tf.constant([1, 4, 1, 1])
    values = tf.constant([[1.0, 2.0], [0.5, -0.5], [0.7, 0.1], [-0.3, 0.4]])
    initial = np.zeros((6, 2), "float32")
    ours, stock = keras.Variable(initial), keras.Variable(initial)
    sparse = tf.IndexedSlices(values, rows, tf.constant([6, 2]))
    probe = Probe(learning_rate=0.1, **options)
    _stock_twin(probe).apply([tf.convert_to_tensor(sparse)], [stock])
    probe.apply([sparse], [ours])
    assert seen == ["IndexedSlices"]
    np.testing.assert_allclose(ours.numpy(), stock.numpy(), atol=1e-6)
    np.testing.assert_array_equal(ours.numpy()[[0, 2, 3, 5]], 0.0)


@pytest.mark.parametrize("ours_cls", [optimizers.Ftrl, optimizers.Adagrad])
def test_dense_gradient_takes_the_stock_update(ours_cls):
    initial = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    grad = tf.constant(np.random.default_rng(1).normal(size=(4, 3)).astype("float32"))
    ours, stock = keras.Variable(initial), keras.Variable(initial)
    optimizer = ours_cls(learning_rate=0.1)
    _stock_twin(optimizer).apply([grad], [stock])
    optimizer.apply([grad], [ours])
    np.testing.assert_array_equal(ours.numpy(), stock.numpy())


def test_deduplicate_indexed_slices():
    grad = tf.IndexedSlices(
        tf.constant([[1.0], [2.0], [4.0], [8.0]]), tf.constant([7, 3, 7, 7]), tf.constant([9, 1])
    )
    unique = optimizers.deduplicate_indexed_slices(grad)
    assert unique.indices.numpy().tolist() == [7, 3]
    assert unique.values.numpy().ravel().tolist() == [13.0, 2.0]
    np.testing.assert_array_equal(tf.convert_to_tensor(unique), tf.convert_to_tensor(grad))


@pytest.mark.parametrize("row_shape", [(1,), (3,), (16,), (2, 4), (40,)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_deduplicated_rows_are_the_segment_sums_exactly(row_shape, dtype):
    # Row widths 2-31 are summed by a sparse one-hot matmul, the others by the segment sum:
    # both must give numpy's sums of each index's rows, in the segment sum's own order.
    rng = np.random.default_rng(1)
    indices = rng.zipf(1.3, 3000) % 500
    values = rng.normal(size=(3000, *row_shape)).astype(dtype)
    grad = tf.IndexedSlices(tf.constant(values), tf.constant(indices), tf.constant([500, 1]))
    unique = optimizers.deduplicate_indexed_slices(grad)
    order = list(dict.fromkeys(indices.tolist()))  # first appearance
    assert unique.indices.numpy().tolist() == order
    expected = np.zeros((500, *row_shape), dtype)
    np.add.at(expected, indices, values)
    np.testing.assert_allclose(unique.values.numpy(), expected[order], rtol=1e-5, atol=1e-6)
    _, positions = tf.unique(tf.constant(indices))
    reference = tf.math.unsorted_segment_sum(tf.constant(values), positions, len(order))
    np.testing.assert_array_equal(unique.values.numpy(), reference.numpy())
    assert unique.values.dtype == dtype and unique.values.shape == (len(order), *row_shape)


@pytest.mark.parametrize(
    ("ours_cls", "config"),
    [
        (
            optimizers.Ftrl,
            {**FTRL_REGULARISED, "l2_shrinkage_regularization_strength": 0.1, "clipnorm": 1.0},
        ),
        (
            optimizers.Adagrad,
            {"learning_rate": 0.3, "epsilon": 1e-5, "initial_accumulator_value": 0.5},
        ),
    ],
)
def test_serialization_round_trip(ours_cls, config, tmp_path):
    optimizer = ours_cls(**config)
    stock_config = getattr(keras.optimizers, ours_cls.__name__)(**config).get_config()
    assert {**optimizer.get_config(), "name": None} == {**stock_config, "name": None}
    restored = ours_cls.from_config(optimizer.get_config())
    assert type(restored) is ours_cls and restored.get_config() == optimizer.get_config()

    serialized = keras.optimizers.serialize(optimizer)
    assert serialized["registered_name"] == f"widedeep>{ours_cls.__name__}"
    deserialized = keras.optimizers.deserialize(json.loads(json.dumps(serialized)))
    assert type(deserialized) is ours_cls

    model = keras.Sequential([keras.Input((2,), dtype="int64"), Embedding(10, 1)])
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.array([[1, 2], [3, 3]]), np.zeros((2, 2, 1)), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is ours_cls
    assert loaded.optimizer.get_config() == optimizer.get_config()
    for variable, restored_variable in zip(
        model.optimizer.variables, loaded.optimizer.variables, strict=True
    ):
        np.testing.assert_array_equal(variable.numpy(), restored_variable.numpy())


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    from widedeep import optimizers
    from widedeep.layers.embedding import Embedding

    seen = []
    rng = np.random.default_rng(0)
    ids = [tf.constant(rng.integers(0, 30, (8, 5)), tf.int64) for _ in range(6)]
    initial = rng.normal(size=(40, 4)).astype("float32")

    def train(cls, config, strategy):
        class Probe(cls):
            def update_step(self, gradient, variable, learning_rate):
                seen.append(type(gradient).__name__)
                return super().update_step(gradient, variable, learning_rate)

        with strategy.scope():
            layer = Embedding(40, 4)
            layer.build()
            layer.set_weights([initial * (cls is optimizers.Adagrad)])
            optimizer = Probe(**config)
            optimizer.build(layer.trainable_variables)

        def replica_step(batch):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(layer(batch) - 1.0))  # summed: replicas add up
            grads = tape.gradient(loss, layer.trainable_variables)
            optimizer.apply(grads, layer.trainable_variables)

        @tf.function
        def step(batch):
            per_replica = strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.split(batch, strategy.num_replicas_in_sync)[
                    ctx.replica_id_in_sync_group
                ]
            )
            strategy.run(replica_step, args=(per_replica,))

        for batch in ids:
            step(batch)
        return [layer.embeddings.numpy()] + [v.numpy() for v in optimizer.variables[1:]]

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": mirrored.num_replicas_in_sync}
    for cls, config in [
        (optimizers.Ftrl, {"learning_rate": 0.1, "l1_regularization_strength": 0.01,
                           "l2_regularization_strength": 0.01}),
        (optimizers.Adagrad, {"learning_rate": 0.1}),
    ]:
        single = train(cls, config, tf.distribute.get_strategy())
        distributed = train(cls, config, mirrored)
        # Relative to magnitude: accumulators grow large and the replicas sum in another order.
        result[cls.__name__] = max(
            float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a))))
            for a, b in zip(single, distributed)
        )
        result[cls.__name__ + "_moved"] = float(np.max(np.abs(single[0] - initial * (cls is optimizers.Adagrad))))
    result["gradient_types"] = sorted(set(seen))
    print("RESULT " + json.dumps(result))
    """
)


def test_mirrored_strategy_equals_single_device():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    completed = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["replicas"] == 2
    assert result["gradient_types"] == ["IndexedSlices"]
    assert result["Ftrl_moved"] > 1e-3 and result["Adagrad_moved"] > 1e-3
    assert result["Ftrl"] < 1e-6
    assert result["Adagrad"] < 1e-6
