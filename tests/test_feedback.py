"""Deep Feedback Interaction Module: numpy oracles, masking, permutation, empty rows, saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from widedeep.layers import ClickAwareAttention, FeedbackInteraction, FeedbackTransformer
from widedeep.schema import FEEDBACK_SEQUENCES

LENGTHS = {"click": 4, "unclick": 5, "dislike": 3}
ITEM_DIM = 6


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


# ---------------------------------------------------------------- numpy references


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_layer_norm(x: np.ndarray, norm: keras.layers.LayerNormalization) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    variance = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + norm.epsilon) * norm.gamma.numpy() + norm.beta.numpy()


def np_transformer(layer: FeedbackTransformer, target, sequence, mask) -> np.ndarray:
    """One Transformer encoder layer over [target; sequence], wired and pooled as `layer` is.

    Post-norm `LayerNorm(x + Sublayer(x))`, or pre-norm `x + Sublayer(LayerNorm(x))` with
    `layer.norm_first`; then the row of the target (`"target"` pooling) or the mean, sum
    or max over the valid rows.
    """
    hidden = np.concatenate([target[:, None], np.where(mask[..., None], sequence, 0.0)], axis=1)
    valid = np.concatenate([np.ones_like(mask[:, :1]), mask], axis=1)
    mha = layer.attention

    def project(dense, x):
        return np.einsum("bld,dnk->blnk", x, dense.kernel.numpy()) + dense.bias.numpy()

    def attend(x):
        query, key, value = (
            project(d, x) for d in (mha.query_dense, mha.key_dense, mha.value_dense)
        )
        scores = np.einsum("bqnk,bsnk->bnqs", query, key) / np.sqrt(query.shape[-1])
        scores = np.where(valid[:, None, None, :], scores, -1e9)
        context = np.einsum("bnqs,bsnk->bqnk", np_softmax(scores), value)
        attended = np.einsum("bqnk,nkd->bqd", context, mha.output_dense.kernel.numpy())
        return attended + mha.output_dense.bias.numpy()

    def feed_forward(x):
        inner = np.maximum(x @ layer.ffn_inner.kernel.numpy() + layer.ffn_inner.bias.numpy(), 0)
        return inner @ layer.ffn_outer.kernel.numpy() + layer.ffn_outer.bias.numpy()

    if layer.norm_first:
        hidden = hidden + attend(np_layer_norm(hidden, layer.attention_norm))
        hidden = hidden + feed_forward(np_layer_norm(hidden, layer.ffn_norm))
    else:
        hidden = np_layer_norm(hidden + attend(hidden), layer.attention_norm)
        hidden = np_layer_norm(hidden + feed_forward(hidden), layer.ffn_norm)
    if layer.pooling == "target":
        return hidden[:, 0]
    if layer.pooling == "max":
        return np.where(valid[..., None], hidden, -np.inf).max(axis=1)
    weights = valid[..., None].astype(hidden.dtype)
    total = (hidden * weights).sum(axis=1)
    return total if layer.pooling == "sum" else total / weights.sum(axis=1)


def randomize_layer_norms(layer: FeedbackTransformer, rng) -> None:
    """Distinct scales and shifts for the two norms (at 1 and 0 they could be swapped unseen)."""
    for norm in (layer.attention_norm, layer.ffn_norm):
        norm.gamma.assign(rng.uniform(0.5, 1.5, norm.gamma.shape))
        norm.beta.assign(rng.normal(scale=0.3, size=norm.beta.shape))


def np_click_aware_attention(layer: ClickAwareAttention, query, values, mask) -> np.ndarray:
    """a_i = w2' ReLU(W1 [q; x_i; q*x_i; q-x_i] + b1) + b2; masked softmax; sum_i alpha_i x_i."""
    scorer = layer.scorer
    w1, b1 = scorer.hidden_layers[0].kernel.numpy(), scorer.hidden_layers[0].bias.numpy()
    w2, b2 = scorer.output_layer.kernel.numpy(), scorer.output_layer.bias.numpy()
    outputs = np.zeros_like(query)
    for b in range(query.shape[0]):
        valid = np.flatnonzero(mask[b])
        if valid.size == 0:
            continue  # no valid item: zero vector
        q, x = query[b], values[b, valid]
        features = np.concatenate([np.broadcast_to(q, x.shape), x, q * x, q - x], axis=-1)
        scores = (np.maximum(features @ w1 + b1, 0) @ w2 + b2)[:, 0]
        outputs[b] = np_softmax(scores) @ x
    return outputs


def np_feedback_interaction(module: FeedbackInteraction, inputs) -> np.ndarray:
    """`f_Feed` by hand from the module's weights, as its docstring writes it.

    `z^s = [x^s; p^s] W_s` over the valid items; `f_s` is the masked mean of `z^s` without
    the sequence's Transformer, else `Transformer_s([t; 0] W_s, z^s)`, or with the residual
    gate `mean(z^s) + g_s * Transformer_s(...)` (the second term zero for an empty
    sequence); `f_cu`, `f_du` attend from `f_c`, `f_d` over `z^u`.
    """
    target = inputs["target"].astype("float64")
    pooled, projected = {}, {}
    for sequence in FEEDBACK_SEQUENCES:
        items, mask = inputs[sequence].astype("float64"), inputs[f"{sequence}_mask"]
        table = module.position_embeddings[sequence].numpy()
        weights = module.projections[sequence].numpy()
        positions = np.broadcast_to(table, (*items.shape[:2], table.shape[1]))
        z = np.concatenate([np.where(mask[..., None], items, 0.0), positions], -1) @ weights
        projected[sequence] = z
        counts = mask.sum(axis=1, keepdims=True)
        mean = (z * mask[..., None]).sum(axis=1) / np.maximum(counts, 1)
        transformer = getattr(module, f"{sequence}_transformer")
        if transformer is None:
            pooled[sequence] = mean
            continue
        interaction = np_transformer(transformer, target @ weights[: target.shape[1]], z, mask)
        if module.residual_gate:
            interaction = mean + module.gates[sequence].numpy() * (counts > 0) * interaction
        pooled[sequence] = interaction
    blocks = [pooled[s] for s in FEEDBACK_SEQUENCES]
    if module.use_click_aware_attention:
        for query, attention in (
            ("click", module.click_unclick_attention),
            ("dislike", module.dislike_unclick_attention),
        ):
            blocks.append(
                np_click_aware_attention(
                    attention, pooled[query], projected["unclick"], inputs["unclick_mask"]
                )
            )
    return np.concatenate(blocks, axis=-1)


# ---------------------------------------------------------------- data helpers


def random_sequence(rng, batch, length, width, valid_counts):
    values = rng.normal(size=(batch, length, width)).astype("float32")
    mask = np.arange(length)[None, :] < np.asarray(valid_counts)[:, None]
    return values, mask


def garble_padding(values: np.ndarray, mask: np.ndarray, fill: float | None, rng) -> np.ndarray:
    """A copy of `values` with other contents at the padded positions."""
    garbage = (
        rng.normal(scale=1e3, size=values.shape) if fill is None else np.full(values.shape, fill)
    )
    return np.where(mask[..., None], values, garbage).astype(values.dtype)


def feedback_inputs(rng, batch=3, valid_counts=None, width=ITEM_DIM):
    """Dict inputs for FeedbackInteraction; row 0 full, row 1 partial, row 2 empty by default."""
    inputs = {"target": rng.normal(size=(batch, width)).astype("float32")}
    for sequence, length in LENGTHS.items():
        counts = valid_counts if valid_counts is not None else [length, 2, 0][:batch]
        inputs[sequence], inputs[f"{sequence}_mask"] = random_sequence(
            rng, batch, length, width, counts
        )
    return inputs


def blocks(outputs, model_dim: int) -> list[np.ndarray]:
    outputs = np.asarray(outputs)
    return [outputs[:, i : i + model_dim] for i in range(0, outputs.shape[1], model_dim)]


# ---------------------------------------------------------------- FeedbackTransformer


def test_transformer_matches_numpy_reference():
    rng = np.random.default_rng(0)
    layer = FeedbackTransformer(num_heads=2)
    target = rng.normal(size=(3, 8)).astype("float32")
    sequence, mask = random_sequence(rng, 3, 5, 8, [5, 2, 0])
    outputs = layer(target, sequence, sequence_mask=mask).numpy()
    expected = np_transformer(layer, target.astype("float64"), sequence.astype("float64"), mask)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fill", [None, 1e30, -1e30, np.inf, np.nan])
@pytest.mark.parametrize("pooling", ["mean", "sum", "max", "target"])
def test_transformer_ignores_padded_values(fill, pooling):
    rng = np.random.default_rng(1)
    layer = FeedbackTransformer(num_heads=2, pooling=pooling)
    target = rng.normal(size=(3, 8)).astype("float32")
    sequence, mask = random_sequence(rng, 3, 5, 8, [3, 1, 0])
    reference = layer(target, sequence, sequence_mask=mask).numpy()
    garbled = layer(target, garble_padding(sequence, mask, fill, rng), sequence_mask=mask).numpy()
    np.testing.assert_array_equal(garbled, reference)


@pytest.mark.parametrize("pooling", ["mean", "sum", "max", "target"])
def test_transformer_ignores_extra_padding(pooling):
    # The authors' code sums over all rows, padded ones included; ours depends on valid rows only.
    rng = np.random.default_rng(2)
    layer = FeedbackTransformer(num_heads=2, pooling=pooling)
    target = rng.normal(size=(2, 8)).astype("float32")
    sequence, mask = random_sequence(rng, 2, 3, 8, [3, 1])
    longer = np.concatenate([sequence, rng.normal(size=(2, 4, 8)).astype("float32")], axis=1)
    longer_mask = np.concatenate([mask, np.zeros((2, 4), dtype=bool)], axis=1)
    np.testing.assert_allclose(
        layer(target, longer, sequence_mask=longer_mask),
        layer(target, sequence, sequence_mask=mask),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("pooling", ["mean", "sum", "max", "target"])
def test_transformer_pooled_output_is_order_invariant(pooling):
    rng = np.random.default_rng(3)
    layer = FeedbackTransformer(num_heads=2, pooling=pooling)
    target = rng.normal(size=(2, 8)).astype("float32")
    sequence, mask = random_sequence(rng, 2, 5, 8, [5, 3])
    permutation = [2, 4, 0, 3, 1]  # also moves padded slots between valid ones
    np.testing.assert_allclose(
        layer(target, sequence[:, permutation], sequence_mask=mask[:, permutation]),
        layer(target, sequence, sequence_mask=mask),
        rtol=1e-5,
        atol=1e-6,
    )


def test_transformer_poolings_agree_with_each_other():
    rng = np.random.default_rng(4)
    target = rng.normal(size=(3, 8)).astype("float32")
    sequence, mask = random_sequence(rng, 3, 5, 8, [5, 2, 0])
    outputs = {}
    for pooling in ("mean", "sum", "max"):
        keras.utils.set_random_seed(7)  # same weights for all three
        outputs[pooling] = FeedbackTransformer(num_heads=2, pooling=pooling)(
            target, sequence, sequence_mask=mask
        ).numpy()
    valid_rows = 1 + mask.sum(axis=1, keepdims=True)  # the target is always valid
    np.testing.assert_allclose(outputs["sum"], outputs["mean"] * valid_rows, rtol=1e-5, atol=1e-5)
    assert np.all(outputs["max"] >= outputs["mean"] - 1e-6)
    # A single valid row (the target): all three poolings coincide.
    np.testing.assert_allclose(outputs["max"][2], outputs["mean"][2], rtol=1e-6)


@pytest.mark.parametrize("norm_first", [True, False])
def test_target_pooling_is_the_output_at_the_target_position(norm_first):
    # The layer runs the target's query alone; the oracle runs every position's.
    rng = np.random.default_rng(4)
    target = rng.normal(size=(3, 8)).astype("float32")
    sequence, mask = random_sequence(rng, 3, 5, 8, [5, 2, 0])
    keras.utils.set_random_seed(7)
    layer = FeedbackTransformer(num_heads=2, pooling="target", norm_first=norm_first)
    out = layer(target, sequence, sequence_mask=mask).numpy()
    # By hand: attention + feed-forward sub-layers on all rows of [t; x], then row 0.
    hidden = np.concatenate([target[:, None], np.where(mask[..., None], sequence, 0)], axis=1)
    valid = np.concatenate([np.ones((3, 1), bool), mask], axis=1)
    attention_mask = np.broadcast_to(valid[:, None, :], (3, 6, 6))

    def attend(x):
        return layer.attention(x, x, attention_mask=attention_mask).numpy()

    def feed_forward(x):
        return layer.ffn_outer(layer.ffn_inner(x)).numpy()

    if norm_first:
        x = hidden + attend(layer.attention_norm(hidden).numpy())
        x = x + feed_forward(layer.ffn_norm(x).numpy())
    else:
        x = layer.attention_norm(hidden + attend(hidden)).numpy()
        x = layer.ffn_norm(x + feed_forward(x)).numpy()
    np.testing.assert_allclose(out, x[:, 0], rtol=1e-5, atol=1e-5)


def test_transformer_empty_sequence_depends_on_target_only():
    rng = np.random.default_rng(5)
    layer = FeedbackTransformer(num_heads=2)
    target = np.repeat(rng.normal(size=(1, 8)).astype("float32"), 2, axis=0)
    sequence = rng.normal(size=(2, 5, 8)).astype("float32")  # different contents per row
    empty = np.zeros((2, 5), dtype=bool)
    outputs = layer(target, sequence, sequence_mask=empty).numpy()
    assert np.all(np.isfinite(outputs))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    alone = layer(target, np.zeros((2, 1, 8), "float32"), sequence_mask=np.zeros((2, 1), bool))
    np.testing.assert_allclose(outputs, alone, rtol=1e-6, atol=1e-6)


def test_transformer_gradients_are_finite_for_empty_rows():
    rng = np.random.default_rng(6)
    layer = FeedbackTransformer(num_heads=2, pooling="max")
    target = tf.constant(rng.normal(size=(2, 8)).astype("float32"))
    sequence = tf.constant(rng.normal(size=(2, 4, 8)).astype("float32"))
    mask = tf.constant([[True, True, False, False], [False, False, False, False]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([target, sequence])
        loss = tf.reduce_sum(layer(target, sequence, sequence_mask=mask) ** 2)
    gradients = tape.gradient(loss, [target, sequence, *layer.trainable_variables])
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients)
    np.testing.assert_array_equal(gradients[1].numpy()[1], 0.0)  # padded items get no gradient


def test_transformer_reads_the_keras_mask_of_the_sequence():
    embedding = keras.layers.Embedding(10, 8, mask_zero=True)
    ids = np.array([[3, 4, 0, 0], [0, 0, 0, 0]])
    sequence = embedding(ids)  # carries a Keras mask: ids > 0
    target = np.random.default_rng(8).normal(size=(2, 8)).astype("float32")
    layer = FeedbackTransformer(num_heads=2)
    np.testing.assert_array_equal(
        layer(target, sequence), layer(target, sequence, sequence_mask=ids > 0)
    )


@pytest.mark.parametrize("pooling", ["mean", "sum", "max", "target"])
def test_transformer_pre_norm_matches_numpy_reference(pooling):
    """norm_first: x + Attention(LN_1(x)), then x + FFN(LN_2(x)), by hand."""
    rng = np.random.default_rng(7)
    target = rng.normal(size=(3, 8)).astype("float32")
    sequence, mask = random_sequence(rng, 3, 5, 8, [5, 2, 0])
    mask[0, 1] = False  # a hole in the middle, too
    pre = FeedbackTransformer(num_heads=2, pooling=pooling, norm_first=True)
    pre(target, sequence, sequence_mask=mask)
    randomize_layer_norms(pre, rng)
    outputs = pre(target, sequence, sequence_mask=mask).numpy()
    expected = np_transformer(pre, target.astype("float64"), sequence.astype("float64"), mask)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)
    # The same weights wired post-norm give another output: the flag is what differs.
    post = FeedbackTransformer(num_heads=2, pooling=pooling)
    post(target, sequence, sequence_mask=mask)
    post.set_weights(pre.get_weights())
    assert not np.allclose(post(target, sequence, sequence_mask=mask), outputs, atol=1e-3)


def test_transformer_validates_arguments_and_shapes():
    with pytest.raises(ValueError, match="pooling"):
        FeedbackTransformer(pooling="attention")
    with pytest.raises(ValueError, match="num_heads"):
        FeedbackTransformer(num_heads=0)
    with pytest.raises(ValueError, match="dropout"):
        FeedbackTransformer(dropout=1.5)
    with pytest.raises(ValueError, match="num_heads"):
        FeedbackTransformer(num_heads=3)(
            np.zeros((1, 8), "float32"), np.zeros((1, 2, 8), "float32")
        )
    with pytest.raises(ValueError, match="same known width"):
        FeedbackTransformer(num_heads=2)(
            np.zeros((1, 4), "float32"), np.zeros((1, 2, 8), "float32")
        )


def test_transformer_config_round_trip():
    layer = FeedbackTransformer(
        num_heads=2, ffn_multiplier=2, dropout=0.1, pooling="sum", norm_first=True
    )
    clone = FeedbackTransformer.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


# ---------------------------------------------------------------- ClickAwareAttention


def test_click_aware_attention_matches_numpy_formula():
    rng = np.random.default_rng(10)
    layer = ClickAwareAttention(hidden_units=[5])
    query = rng.normal(size=(3, 4)).astype("float32")
    values, mask = random_sequence(rng, 3, 6, 4, [6, 2, 0])
    mask[0, 1] = False  # a hole in the middle, too
    outputs = layer(query, values, values_mask=mask).numpy()
    expected = np_click_aware_attention(
        layer, query.astype("float64"), values.astype("float64"), mask
    )
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs[2], 0.0)


def test_click_aware_attention_single_valid_item_is_returned():
    rng = np.random.default_rng(11)
    layer = ClickAwareAttention()
    values = rng.normal(size=(1, 3, 4)).astype("float32")
    outputs = layer(
        rng.normal(size=(1, 4)).astype("float32"), values, values_mask=np.array([[0, 1, 0]])
    )
    np.testing.assert_allclose(outputs, values[:, 1], rtol=1e-6)


@pytest.mark.parametrize("fill", [None, 1e30, np.inf, np.nan])
def test_click_aware_attention_ignores_padded_values(fill):
    rng = np.random.default_rng(12)
    layer = ClickAwareAttention(hidden_units=[8, 4])
    query = rng.normal(size=(3, 4)).astype("float32")
    values, mask = random_sequence(rng, 3, 5, 4, [4, 1, 0])
    reference = layer(query, values, values_mask=mask).numpy()
    garbled = layer(query, garble_padding(values, mask, fill, rng), values_mask=mask).numpy()
    np.testing.assert_array_equal(garbled, reference)


def test_click_aware_attention_gradients_are_finite_for_empty_rows():
    rng = np.random.default_rng(13)
    layer = ClickAwareAttention()
    query = tf.constant(rng.normal(size=(2, 4)).astype("float32"))
    values = tf.constant(rng.normal(size=(2, 3, 4)).astype("float32"))
    mask = tf.constant([[True, False, True], [False, False, False]])
    with tf.GradientTape() as tape:
        tape.watch([query, values])
        loss = tf.reduce_sum(layer(query, values, values_mask=mask))
    gradients = tape.gradient(loss, [query, values, *layer.trainable_variables])
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients)
    np.testing.assert_array_equal(gradients[0].numpy()[1], 0.0)


def test_click_aware_attention_validates_and_round_trips():
    with pytest.raises(ValueError, match="hidden_units"):
        ClickAwareAttention(hidden_units=[])
    with pytest.raises(ValueError, match="same known width"):
        ClickAwareAttention()(np.zeros((1, 3), "float32"), np.zeros((1, 2, 4), "float32"))
    layer = ClickAwareAttention(hidden_units=[64, 32], activation="sigmoid", dropout=0.2)
    assert ClickAwareAttention.from_config(layer.get_config()).get_config() == layer.get_config()


# ---------------------------------------------------------------- FeedbackInteraction


@pytest.mark.parametrize(
    "settings",
    [
        {},  # DFN's defaults: target pooling, pre-norm, residual gates
        {"pooling": "mean", "norm_first": False, "residual_gate": False},  # the paper's
        {"pooling": "max", "share_click_aware_attention": True},
    ],
)
def test_interaction_matches_numpy_reference(settings):
    rng = np.random.default_rng(20)
    inputs = feedback_inputs(rng)  # rows: full, partial, empty sequences
    inputs["click_mask"][1] = [True, False, True, False]  # a hole in the middle
    module = FeedbackInteraction(model_dim=8, num_heads=2, **settings)
    module(inputs)
    for sequence in FEEDBACK_SEQUENCES:  # no zero gate, no unit norm hides a term
        if module.residual_gate:
            module.gates[sequence].assign(rng.normal(size=8))
        randomize_layer_norms(getattr(module, f"{sequence}_transformer"), rng)
    outputs = module(inputs).numpy()
    assert module.output_dim == 40 and outputs.shape == (3, 40)
    np.testing.assert_allclose(
        outputs, np_feedback_interaction(module, inputs), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(blocks(outputs, 8)[3][2], 0.0)  # no unclick: f_cu = 0
    if module.residual_gate:  # an empty sequence: f_s = 0 (the mean, and no interaction)
        np.testing.assert_array_equal(outputs[2, :24], 0.0)


def test_interaction_composes_its_sublayers_as_documented():
    """f_s = Transformer_s([t; 0] W_s, [x; p] W_s) and f_qu = Attention_q(f_q, [x_u; p_u] W_u)."""
    rng = np.random.default_rng(21)
    inputs = feedback_inputs(rng)
    module = FeedbackInteraction(model_dim=8, num_heads=2, residual_gate=False)
    f_c, f_u, f_d, f_cu, f_du = blocks(module(inputs), 8)

    def projected(sequence):
        items = np.where(inputs[f"{sequence}_mask"][..., None], inputs[sequence], 0.0)
        table = module.position_embeddings[sequence].numpy()
        positions = np.broadcast_to(table, (*items.shape[:2], table.shape[1]))
        return np.concatenate([items, positions], -1) @ module.projections[sequence].numpy()

    pooled = {}
    for sequence, block in zip(FEEDBACK_SEQUENCES, (f_c, f_u, f_d), strict=True):
        target = inputs["target"] @ module.projections[sequence].numpy()[:ITEM_DIM]
        transformer = getattr(module, f"{sequence}_transformer")
        pooled[sequence] = transformer(
            target, projected(sequence), sequence_mask=inputs[f"{sequence}_mask"]
        ).numpy()
        np.testing.assert_allclose(block, pooled[sequence], rtol=1e-5, atol=1e-5)
    unclicks, unclick_mask = projected("unclick"), inputs["unclick_mask"]
    np.testing.assert_allclose(
        f_cu,
        np_click_aware_attention(
            module.click_unclick_attention, pooled["click"], unclicks, unclick_mask
        ),
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        f_du,
        np_click_aware_attention(
            module.dislike_unclick_attention, pooled["dislike"], unclicks, unclick_mask
        ),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("fill", [None, 1e30, np.nan])
def test_interaction_ignores_padded_values(fill):
    rng = np.random.default_rng(22)
    inputs = feedback_inputs(rng)
    module = FeedbackInteraction(model_dim=8, num_heads=2)
    reference = module(inputs).numpy()
    garbled = dict(inputs)
    for sequence in FEEDBACK_SEQUENCES:
        garbled[sequence] = garble_padding(inputs[sequence], inputs[f"{sequence}_mask"], fill, rng)
    np.testing.assert_array_equal(module(garbled).numpy(), reference)


def test_interaction_position_embeddings_make_order_matter():
    rng = np.random.default_rng(23)
    inputs = feedback_inputs(rng, batch=2, valid_counts=[4, 3])
    module = FeedbackInteraction(model_dim=8, num_heads=2)
    module(inputs)
    for gate in module.gates.values():  # at zero, f_c is a mean: order-invariant
        gate.assign(np.ones(8))
    reference = blocks(module(inputs), 8)
    shuffled = dict(inputs)
    shuffled["click"] = inputs["click"][:, [2, 0, 1, 3]]  # permutes valid items of both rows
    outputs = blocks(module(shuffled), 8)
    assert not np.allclose(outputs[0], reference[0], atol=1e-5)  # f_c changes
    for i in (1, 2):  # f_u, f_d do not see the clicks
        np.testing.assert_array_equal(outputs[i], reference[i])


def test_interaction_empty_sequences_are_finite_with_finite_gradients():
    rng = np.random.default_rng(24)
    inputs = {k: tf.constant(v) for k, v in feedback_inputs(rng).items()}  # row 2: all empty
    module = FeedbackInteraction(model_dim=8, num_heads=2)
    with tf.GradientTape() as tape:
        tape.watch(inputs["target"])
        outputs = module(inputs)
        loss = tf.reduce_sum(outputs**2)
    gradients = tape.gradient(loss, [inputs["target"], *module.trainable_variables])
    assert np.all(np.isfinite(outputs.numpy()))
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)
    f_cu, f_du = blocks(outputs, 8)[3:]
    np.testing.assert_array_equal(f_cu[2], 0.0)  # no unclick to attend to
    np.testing.assert_array_equal(f_du[2], 0.0)


def test_interaction_empty_click_row_depends_on_target_only():
    rng = np.random.default_rng(25)
    inputs = feedback_inputs(rng, batch=2, valid_counts=[0, 0])
    inputs["target"] = np.repeat(inputs["target"][:1], 2, axis=0)
    f_c = blocks(FeedbackInteraction(model_dim=8, num_heads=2)(inputs), 8)[0]
    np.testing.assert_allclose(f_c[0], f_c[1], rtol=1e-6, atol=1e-6)


def test_interaction_missing_masks_mean_all_valid():
    rng = np.random.default_rng(26)
    inputs = feedback_inputs(rng, batch=2, valid_counts=[5, 5])
    module = FeedbackInteraction(model_dim=8, num_heads=2)
    with_masks = {**inputs, **{f"{s}_mask": np.ones((2, n), bool) for s, n in LENGTHS.items()}}
    without_masks = {k: v for k, v in inputs.items() if not k.endswith("_mask")}
    np.testing.assert_allclose(module(without_masks), module(with_masks), rtol=1e-6, atol=1e-6)
    # A 0/1 numeric mask means the same as a boolean one.
    numeric = {k: v.astype("float32") if k.endswith("_mask") else v for k, v in inputs.items()}
    np.testing.assert_array_equal(module(numeric), module(inputs))


@pytest.mark.parametrize(
    "switches",
    [
        {"use_click_aware_attention": False},
        {"use_click_transformer": False},
        {"use_unclick_transformer": False, "use_dislike_transformer": False},
        {
            "use_click_transformer": False,
            "use_unclick_transformer": False,
            "use_dislike_transformer": False,
            "use_click_aware_attention": False,
        },
    ],
)
def test_interaction_ablation_switches_remove_their_part(switches):
    """An ablated module has no weight of the part it drops and computes the full module
    with that part taken out: a Transformer's gated term at zero, the attention blocks cut."""
    rng = np.random.default_rng(27)
    inputs = feedback_inputs(rng)
    full = FeedbackInteraction(model_dim=8, num_heads=2, name="feedback")
    ablated = FeedbackInteraction(model_dim=8, num_heads=2, name="feedback", **switches)
    full(inputs), ablated(inputs)
    removed = {s for s in FEEDBACK_SEQUENCES if not switches.get(f"use_{s}_transformer", True)}
    attention = switches.get("use_click_aware_attention", True)
    dropped = {f"{s}_transformer" for s in removed} | {f"{s}_gate" for s in removed}
    if not attention:
        dropped |= {"click_unclick_attention", "dislike_unclick_attention"}
    # The part's layers and weights are gone, and nothing else.
    part = lambda v: v.path.split("/")[1]  # noqa: E731
    assert {part(v) for v in full.weights} - {part(v) for v in ablated.weights} == dropped
    for sequence in removed:
        assert getattr(ablated, f"{sequence}_transformer") is None
        assert sequence not in ablated.gates
    if not attention:
        assert ablated.click_unclick_attention is ablated.dislike_unclick_attention is None
    assert ablated.output_dim == (40 if attention else 24)
    # With the full module's weights, the ablated one computes the full module without the part.
    for sequence in FEEDBACK_SEQUENCES:
        full.gates[sequence].assign(rng.normal(size=8))  # every Transformer counts
    by_path = {v.path: v for v in full.weights}
    for v in ablated.weights:
        v.assign(by_path[v.path])
    before = full(inputs).numpy()
    for sequence in removed:
        full.gates[sequence].assign(np.zeros(8))  # the Transformer's term leaves f_s
    expected = full(inputs).numpy()[:, : ablated.output_dim]
    if removed:
        assert not np.allclose(before, full(inputs).numpy(), atol=1e-4)  # it did count
    np.testing.assert_allclose(ablated(inputs).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_interaction_residual_gate_adds_the_gated_transformer_to_the_mean():
    """f_s = mean(z^s) + g_s * Transformer_s(t^s, z^s), the second term zero for an empty sequence."""
    rng = np.random.default_rng(29)
    inputs = feedback_inputs(rng)  # row 2: every sequence empty
    gated = FeedbackInteraction(model_dim=8, num_heads=2)
    means = FeedbackInteraction(
        model_dim=8,
        num_heads=2,
        use_click_transformer=False,
        use_unclick_transformer=False,
        use_dislike_transformer=False,
    )
    ungated = FeedbackInteraction(model_dim=8, num_heads=2, residual_gate=False)
    for module in (gated, means, ungated):
        module(inputs)
    for sequence in FEEDBACK_SEQUENCES:
        for module in (means, ungated):
            module.projections[sequence].assign(gated.projections[sequence])
            module.position_embeddings[sequence].assign(gated.position_embeddings[sequence])
        ungated_transformer = getattr(ungated, f"{sequence}_transformer")
        for theirs, ours in zip(
            ungated_transformer.weights,
            getattr(gated, f"{sequence}_transformer").weights,
            strict=True,
        ):
            theirs.assign(ours)
    # At initialisation the gates are zero: the three blocks are the plain means.
    for got, mean in zip(blocks(gated(inputs), 8)[:3], blocks(means(inputs), 8)[:3], strict=True):
        np.testing.assert_allclose(got, mean, rtol=1e-6, atol=1e-7)
    gates = {s: rng.normal(size=8).astype("float32") for s in FEEDBACK_SEQUENCES}
    for sequence, gate in gates.items():
        gated.gates[sequence].assign(gate)
    outputs = blocks(gated(inputs), 8)
    for i, sequence in enumerate(FEEDBACK_SEQUENCES):
        mean, interaction = blocks(means(inputs), 8)[i], blocks(ungated(inputs), 8)[i]
        expected = mean + gates[sequence] * interaction
        expected[2] = 0.0  # an empty sequence: no target-only vector
        np.testing.assert_allclose(outputs[i], expected, rtol=1e-5, atol=1e-6)


def test_interaction_without_transformer_pools_the_projected_items():
    rng = np.random.default_rng(28)
    inputs = feedback_inputs(rng)
    module = FeedbackInteraction(model_dim=8, num_heads=2, use_click_transformer=False)
    assert module.click_transformer is None
    f_c, _, _, f_cu, _ = blocks(module(inputs), 8)
    mask = inputs["click_mask"]
    table = module.position_embeddings["click"].numpy()
    items = (
        np.concatenate([inputs["click"], np.broadcast_to(table, (3, *table.shape))], -1)
        @ module.projections["click"].numpy()
    )
    counts = np.maximum(mask.sum(1, keepdims=True), 1)
    expected = (items * mask[..., None]).sum(1) / counts
    np.testing.assert_allclose(f_c, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(f_c[2], 0.0)  # empty click sequence
    assert np.all(np.isfinite(f_cu))  # the masked mean is the query


def test_interaction_shared_attention_has_fewer_weights():
    separate = FeedbackInteraction(model_dim=8, num_heads=2)
    shared = FeedbackInteraction(model_dim=8, num_heads=2, share_click_aware_attention=True)
    inputs = feedback_inputs(np.random.default_rng(29))
    separate(inputs), shared(inputs)
    assert shared.click_unclick_attention is shared.dislike_unclick_attention
    assert (
        len(separate.weights) - len(shared.weights) == 4
    )  # one attention MLP: 2 kernels, 2 biases


def test_interaction_validates_arguments_and_inputs():
    with pytest.raises(ValueError, match="model_dim"):
        FeedbackInteraction(model_dim=10, num_heads=4)
    with pytest.raises(ValueError, match="pooling"):
        FeedbackInteraction(pooling="median")
    with pytest.raises(ValueError, match="use_click_transformer"):
        FeedbackInteraction(use_click_transformer=1)
    inputs = feedback_inputs(np.random.default_rng(30))
    with pytest.raises(ValueError, match="dislike"):
        FeedbackInteraction(model_dim=8, num_heads=2)(
            {k: v for k, v in inputs.items() if k != "dislike"}
        )
    inputs["unclick"] = inputs["unclick"][..., :4]
    with pytest.raises(ValueError, match="unclick"):
        FeedbackInteraction(model_dim=8, num_heads=2)(inputs)


def test_interaction_config_round_trip_gives_same_outputs():
    module = FeedbackInteraction(
        model_dim=8,
        num_heads=2,
        pooling="sum",
        position_dim=3,
        attention_hidden_units=[6, 4],
        use_dislike_transformer=False,
    )
    inputs = feedback_inputs(np.random.default_rng(31))
    outputs = module(inputs)
    clone = FeedbackInteraction.from_config(module.get_config())
    clone(inputs)
    clone.set_weights(module.get_weights())
    assert clone.get_config() == module.get_config()
    np.testing.assert_array_equal(clone(inputs), outputs)


def test_interaction_in_saved_model_reloads_identically(tmp_path):
    model_inputs = {"target": keras.Input((ITEM_DIM,), name="target")}
    for sequence, length in LENGTHS.items():
        model_inputs[sequence] = keras.Input((length, ITEM_DIM), name=sequence)
        model_inputs[f"{sequence}_mask"] = keras.Input(
            (length,), dtype="bool", name=f"{sequence}_mask"
        )
    feedback = FeedbackInteraction(model_dim=8, num_heads=2, name="feedback")(model_inputs)
    logit = keras.layers.Dense(1)(feedback)
    model = keras.Model(model_inputs, logit)
    path = tmp_path / "dfn_feedback.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # no custom_objects: the layers are registered
    inputs = feedback_inputs(np.random.default_rng(32))
    np.testing.assert_array_equal(
        reloaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0)
    )
    assert isinstance(reloaded.get_layer("feedback"), FeedbackInteraction)
