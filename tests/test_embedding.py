"""widedeep's Embedding: same outputs and masks as keras.layers.Embedding, a sparse gather and gradient."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from widedeep.layers.embedding import Embedding


def _pair(rows: int = 12, dim: int = 3, **kwargs) -> tuple[Embedding, keras.layers.Embedding]:
    ours = Embedding(rows, dim, **kwargs)
    stock = keras.layers.Embedding(rows, dim, **kwargs)
    ours.build()
    stock.build()
    stock.set_weights(ours.get_weights())
    return ours, stock


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_outputs_equal_stock(dtype):
    ours, stock = _pair()
    ids = tf.constant(
        [[0, 5, 5], [11, -1, 2]], dtype=dtype
    )  # -1 wraps to the last row, as in stock
    np.testing.assert_array_equal(ours(ids), stock(ids))
    assert ours(ids).shape == (2, 3, 3)
    np.testing.assert_array_equal(ours(ids)[1, 1], ours.embeddings.numpy()[11])


def test_ragged_and_sparse_inputs_equal_stock():
    ours, stock = _pair()
    ragged = tf.ragged.constant([[1, 2], [3]], dtype=tf.int64)
    np.testing.assert_array_equal(ours(ragged).flat_values, stock(ragged).flat_values)
    sparse = tf.sparse.SparseTensor([[0, 0], [1, 2]], tf.constant([4, 7], tf.int64), [2, 3])
    np.testing.assert_array_equal(ours(sparse), stock(sparse))


def test_gradient_is_indexed_slices_of_the_batch_rows():
    ours, stock = _pair()
    ids = tf.constant([[1, 4, 4], [9, 1, 0]], dtype=tf.int64)
    weights = tf.constant(np.arange(18, dtype="float32").reshape(2, 3, 3))

    def gradient(layer: keras.layers.Embedding) -> tf.IndexedSlices | tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(ids) * weights)
        return tape.gradient(loss, layer.trainable_variables)[0]

    grad = gradient(ours)
    assert isinstance(grad, tf.IndexedSlices)
    assert grad.indices.numpy().tolist() == [1, 4, 4, 9, 1, 0]
    np.testing.assert_array_equal(grad.values, weights.numpy().reshape(6, 3))
    np.testing.assert_array_equal(tf.convert_to_tensor(grad), tf.convert_to_tensor(gradient(stock)))


def test_valid_positions_only_zeros_elsewhere_and_no_gradient_rows():
    """`valid`: the valid positions' rows, zeros at the others; the gradient names valid rows only."""
    ours, stock = _pair()
    ids = tf.constant([[1, 4, 4, 0], [9, 1, 7, 7]], dtype=tf.int64)
    valid = tf.constant([[True, True, False, False], [True, False, True, False]])
    expected = np.where(valid.numpy()[..., None], stock(ids).numpy(), 0.0)
    np.testing.assert_array_equal(ours(ids, valid=valid), expected)
    weights = tf.constant(np.arange(24, dtype="float32").reshape(2, 4, 3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ours(ids, valid=valid) * weights)
    grad = tape.gradient(loss, ours.trainable_variables)[0]
    assert isinstance(grad, tf.IndexedSlices)
    assert grad.indices.numpy().tolist() == [1, 4, 9, 7]  # row-major valid positions
    np.testing.assert_array_equal(grad.values, weights.numpy()[valid.numpy()])
    with tf.GradientTape() as tape:
        dense = tf.reduce_sum(tf.where(valid[..., None], stock(ids), 0.0) * weights)
    np.testing.assert_array_equal(
        tf.convert_to_tensor(grad),
        tf.convert_to_tensor(tape.gradient(dense, stock.trainable_variables)[0]),
    )
    none_valid = tf.zeros_like(valid)
    np.testing.assert_array_equal(ours(ids, valid=none_valid), np.zeros((2, 4, 3)))


def test_valid_of_another_shape_raises_naming_both_shapes():
    ours, _ = _pair()
    ids = tf.constant([[1, 4, 4], [9, 1, 7]], dtype=tf.int64)
    with pytest.raises(
        ValueError, match=r"`valid` must have the shape of the ids.*\(2, 3\).*\(2, 2\)"
    ):
        ours(ids, valid=tf.ones((2, 2), tf.bool))
    with pytest.raises(ValueError, match="`valid` must have the shape of the ids"):
        ours(keras.Input((3,), dtype="int64"), valid=keras.Input((4,), dtype="bool"))


def test_valid_in_a_functional_model_round_trips(tmp_path):
    ids = keras.Input((4,), dtype="int64")
    valid = keras.Input((4,), dtype="bool")
    model = keras.Model([ids, valid], Embedding(12, 3, name="table")(ids, valid=valid))
    x = [np.array([[3, 5, 5, 11]]), np.array([[True, False, True, False]])]
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    table = model.get_layer("table").embeddings.numpy()
    np.testing.assert_array_equal(
        model.predict(x, verbose=0)[0], [table[3], [0] * 3, table[5], [0] * 3]
    )
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_lookup_reads_only_the_requested_rows():
    """The traced graph gathers from the table's resource handle and never reads it whole."""
    ours, stock = _pair(rows=1000)

    def ops_on_table(layer: keras.layers.Embedding) -> set[str]:
        def lookup_and_gradient(ids: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(ids))
            return tf.convert_to_tensor(tape.gradient(loss, layer.embeddings).values)

        graph = (
            tf.function(lookup_and_gradient)
            .get_concrete_function(tf.TensorSpec([None, 4], tf.int64))
            .graph
        )
        handle = layer.embeddings.value.handle
        (captured,) = [inside for outside, inside in graph.captures if outside is handle]
        return {op.type for op in captured.consumers()}

    assert ops_on_table(ours) == {"ResourceGather"}
    assert "ReadVariableOp" in ops_on_table(stock)  # what the stock layer does: a full read


def test_masking_is_the_parents():
    ours, stock = _pair(mask_zero=True)
    ids = tf.constant([[3, 0, 2]], dtype=tf.int64)
    np.testing.assert_array_equal(ours.compute_mask(ids), [[True, False, True]])
    model = keras.Sequential([keras.Input((None,), dtype="int64"), ours, keras.layers.LSTM(2)])
    stock_model = keras.Sequential(
        [keras.Input((None,), dtype="int64"), stock, keras.layers.LSTM(2)]
    )
    stock_model.set_weights(model.get_weights())
    np.testing.assert_allclose(model(ids), stock_model(ids), atol=1e-6)
    # Masked steps are skipped: a trailing pad does not change the LSTM output.
    padded = tf.constant([[3, 0, 2, 0, 0]], dtype=tf.int64)
    np.testing.assert_allclose(model(padded), model(ids), atol=1e-6)


def test_config_and_save_load_round_trip(tmp_path):
    layer = Embedding(
        20,
        2,
        embeddings_initializer="zeros",
        embeddings_regularizer="l2",
        mask_zero=True,
        name="wide_table",
    )
    config = layer.get_config()
    stock_config = keras.layers.Embedding(
        20, 2, embeddings_initializer="zeros", embeddings_regularizer="l2", mask_zero=True
    ).get_config()
    assert set(config) == set(stock_config)
    restored = Embedding.from_config(config)
    assert type(restored) is Embedding and restored.get_config() == config
    assert keras.layers.serialize(layer)["registered_name"] == "widedeep>Embedding"

    model = keras.Sequential([keras.Input((3,), dtype="int64"), Embedding(20, 2)])
    path = tmp_path / "embedding.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[0]) is Embedding
    ids = np.array([[1, 2, 19]])
    np.testing.assert_array_equal(loaded(ids), model(ids))


def test_invalid_arguments_raise_like_the_parent():
    with pytest.raises(ValueError, match="input_dim"):
        Embedding(0, 2)
    with pytest.raises(ValueError, match="output_dim"):
        Embedding(10, -1)
