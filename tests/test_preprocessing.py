"""In-model preprocessing layers: exact and hashed crosses, standardisation."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from widedeep.layers.preprocessing import HashedCross, Standardize


def test_cross_is_exact_mixed_radix_when_the_product_fits():
    layer = HashedCross(num_bins=60, cardinalities=[3, 4, 5])
    assert layer.exact
    combos = np.array(list(itertools.product(range(3), range(4), range(5))))
    out = layer([combos[:, 0], combos[:, 1], combos[:, 2]]).numpy()
    np.testing.assert_array_equal(out, combos[:, 0] * 20 + combos[:, 1] * 5 + combos[:, 2])
    assert sorted(out.tolist()) == list(range(60))  # one bucket per combination


def test_cross_hashes_into_range_stably_when_the_product_does_not_fit():
    layer = HashedCross(num_bins=97, cardinalities=[1000, 1000])
    assert not layer.exact
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 1000, 5000), rng.integers(0, 1000, 5000)
    out = layer([a, b]).numpy()
    assert out.min() >= 0 and out.max() < 97 and len(np.unique(out)) == 97
    # The bucket is the FarmHash64 fingerprint of the row (independent of the batch).
    fingerprint = tf.bitcast(tf.fingerprint(tf.constant([[a[0], b[0]]], tf.int64)), tf.int64)
    assert out[0] == (int(fingerprint[0]) & (2**63 - 1)) % 97
    np.testing.assert_array_equal(layer([a[:3], b[:3]]).numpy(), out[:3])
    # The order of the crossed values matters; no cardinalities means hashing too.
    assert (layer([b, a]).numpy() != out).any()
    np.testing.assert_array_equal(HashedCross(num_bins=97)([a, b]).numpy(), out)


def test_cross_config_round_trip_and_errors():
    layer = HashedCross(num_bins=12, cardinalities=[3, 4], name="c")
    clone = HashedCross.from_config(layer.get_config())
    assert clone.cardinalities == [3, 4] and clone.num_bins == 12 and clone.exact
    with pytest.raises(ValueError, match="num_bins"):
        HashedCross(num_bins=0)
    with pytest.raises(ValueError, match="cardinalities"):
        HashedCross(num_bins=5, cardinalities=[3])
    with pytest.raises(ValueError, match="3 inputs"):
        layer([np.array([1]), np.array([2]), np.array([0])])


def test_standardize_uses_the_given_statistics():
    layer = Standardize(mean=2.0, std=4.0)
    out = layer(np.array([2.0, 6.0, -2.0], dtype="float32"))
    np.testing.assert_allclose(out.numpy(), [[0.0], [1.0], [-1.0]])
    assert keras.ops.shape(out) == (3, 1)
    with pytest.raises(ValueError, match="std"):
        Standardize(std=0.0)


def test_sequence_position_with_one_missing_item_feature_stays_valid(tiny_schema, tiny_batch):
    from widedeep.features import FeatureGraph

    graph = FeatureGraph(tiny_schema)
    vectors, mask = graph.sequence_vectors("click")
    model = keras.Model(graph.inputs, [vectors, mask, graph.embedding("category")])
    x = {k: v[:2].copy() for k, v in tiny_batch[0].items()}
    x["click_item_id"][:] = [[3, 4, -1, -1, -1], [5, -1, -1, -1, -1]]
    x["click_category"][:] = [[-1, 2, -1, -1, -1], [1, -1, -1, -1, -1]]  # item 3 has no category
    x["category"][:] = -1  # a target item without a category
    got_vectors, got_mask, target_category = model.predict(x, verbose=0)
    np.testing.assert_array_equal(got_mask, [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    # The missing category takes the vector a target item without a category gets.
    np.testing.assert_allclose(got_vectors[0, 0, 4:], target_category[0], rtol=1e-6)
    assert not np.allclose(got_vectors[0, 1, 4:], target_category[0])  # category 2's own vector
