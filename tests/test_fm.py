"""FactorizationMachine: hand-computed and brute-force pairwise oracles."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from widedeep.layers.fm import FactorizationMachine


def pairwise_interaction(embeddings: np.ndarray) -> np.ndarray:
    """sum_{i<j} e_i * e_j (element-wise), the definition the O(F k) formula rewrites."""
    fields = embeddings.shape[1]
    total = np.zeros((embeddings.shape[0], embeddings.shape[2]))
    for i, j in itertools.combinations(range(fields), 2):
        total += embeddings[:, i] * embeddings[:, j]
    return total


def test_two_fields_by_hand():
    embeddings = np.array([[[1.0, 2.0], [3.0, 4.0]]], dtype="float32")
    # 0.5 * ((1+3)^2 - (1+9), (2+4)^2 - (4+16)) = (3, 8) = e1 * e2
    np.testing.assert_allclose(FactorizationMachine()(embeddings), [[3.0, 8.0]])
    np.testing.assert_allclose(FactorizationMachine(reduce_sum=True)(embeddings), [[11.0]])


def test_matches_brute_force_pairs():
    embeddings = np.random.default_rng(0).normal(size=(4, 5, 3)).astype("float32")
    expected = pairwise_interaction(embeddings.astype("float64"))
    np.testing.assert_allclose(FactorizationMachine()(embeddings), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        FactorizationMachine(reduce_sum=True)(embeddings),
        expected.sum(axis=1, keepdims=True),
        rtol=1e-5,
        atol=1e-5,
    )


def test_single_field_has_no_interaction():
    embeddings = np.array([[[1.5, -2.0, 3.0]]], dtype="float32")
    np.testing.assert_array_equal(FactorizationMachine()(embeddings), [[0.0, 0.0, 0.0]])


def test_invariant_to_field_order():
    embeddings = np.random.default_rng(1).normal(size=(3, 6, 4)).astype("float32")
    permuted = embeddings[:, [3, 0, 5, 1, 4, 2]]
    fm = FactorizationMachine()
    np.testing.assert_allclose(fm(embeddings), fm(permuted), rtol=1e-6, atol=1e-6)


def test_gradient_is_sum_of_other_fields():
    # d/d e_f of sum_{i<j} <e_i, e_j> = sum_{g != f} e_g.
    embeddings = tf.constant(np.random.default_rng(2).normal(size=(2, 3, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        total = tf.reduce_sum(FactorizationMachine(reduce_sum=True)(embeddings))
    gradient = tape.gradient(total, embeddings).numpy()
    values = embeddings.numpy()
    expected = values.sum(axis=1, keepdims=True) - values
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-6)


def test_has_no_weights_and_output_shape():
    fm = FactorizationMachine(reduce_sum=True)
    fm(np.zeros((2, 3, 4), dtype="float32"))
    assert fm.weights == []
    assert fm.compute_output_shape((None, 3, 4)) == (None, 1)
    assert FactorizationMachine().compute_output_shape((None, 3, 4)) == (None, 4)


def test_config_round_trip():
    fm = FactorizationMachine(reduce_sum=True, name="fm")
    clone = FactorizationMachine.from_config(fm.get_config())
    assert clone.reduce_sum is True
    assert clone.name == "fm"
    assert keras.saving.get_registered_name(FactorizationMachine) == "widedeep>FactorizationMachine"


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="reduce_sum"):
        FactorizationMachine(reduce_sum="yes")
    with pytest.raises(ValueError, match="batch, fields, k"):
        FactorizationMachine()(np.zeros((2, 3), dtype="float32"))
