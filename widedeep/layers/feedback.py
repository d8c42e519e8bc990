"""The Deep Feedback Interaction Module of DFN (Xie et al., IJCAI 2020), as Keras layers.

Three layers, composable on their own:

* `FeedbackTransformer` — *internal* feedback interaction: one Transformer layer over the target
  item prepended to one feedback sequence, then masked pooling -> `f_s`.
* `ClickAwareAttention` — *external* feedback interaction: DIN-style attention of a query
  (`f_c` or `f_d`) over the noisy unclick items -> `f_cu` / `f_du`.
* `FeedbackInteraction` — the whole module: per-sequence position embeddings and projections,
  the three Transformers, the two click-aware attentions, output `[f_c; f_u; f_d; f_cu; f_du]`.

Masking convention: a mask is a `[B, L]` tensor, `True` (or non-zero) at valid positions.
Every layer replaces padded positions by zeros *before* any computation (`where`, not a
multiplication, so even `inf`/`nan` padding cannot leak), masks attention logits with a large
negative number, and pools over valid positions only. Hence no output depends on the values
stored at padded positions, and an all-padding row gives finite outputs and finite gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from widedeep.layers.mlp import MLP
from widedeep.layers.pooling import masked_mean

FEEDBACK_SEQUENCES: tuple[str, ...] = ("click", "unclick", "dislike")
"""Feedback sequences of `FeedbackInteraction`, in the order of its output blocks."""

POOLINGS: tuple[str, ...] = ("mean", "sum", "max", "target")


def _large_negative(dtype: str) -> float:
    # -1e9 overflows float16 to -inf, and a row of -inf gives NaN in softmax.
    return -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


def _as_bool_mask(mask: Any, values: Any) -> Any:
    """`[B, L]` bool mask (all valid when `mask` is None)."""
    if mask is None:
        return ops.ones(ops.shape(values)[:2], dtype="bool")
    if keras.backend.standardize_dtype(mask.dtype) != "bool":
        mask = ops.greater(mask, 0)
    return mask


def _zero_padding(values: Any, mask: Any) -> Any:
    """Replace the items at padded positions of `values` `[B, L, d]` by zeros."""
    return ops.where(ops.expand_dims(mask, -1), values, ops.zeros_like(values))


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def _check_rate(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1). Received: {name}={value!r}")


def _check_pooling(pooling: Any) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")


@keras.saving.register_keras_serializable(package="widedeep")
class FeedbackTransformer(keras.layers.Layer):
    """Internal feedback interaction: one Transformer layer over `[target; sequence]`, pooled.

    The target item vector `t` is prepended to the feedback sequence, `H = [t; x_1..x_L]`, and
    one Transformer encoder layer runs over `H`: multi-head self-attention with a key mask over
    the padded positions (the target is always valid), then a position-wise feed-forward network
    `d -> ffn_multiplier * d -> d` (ReLU). Each sub-layer has a residual connection, layer
    normalization and dropout. The outputs are then pooled over the *valid* positions (the
    target included) into one vector `f_s` of width `d`.

    Choices (the paper and the authors' code disagree):

    * Sub-layer wiring. The paper says "Transformer"; the authors' code has neither residual
      connections nor layer norm, scales logits by `1/sqrt(d)` instead of `1/sqrt(d / heads)`
      and has no attention output projection. We use the standard encoder layer of Vaswani et
      al. (post-norm, `LayerNorm(x + Sublayer(x))`, `norm_first=False`), which trains more
      stably; `norm_first=True` gives the pre-norm variant `x + Sublayer(LayerNorm(x))`.
    * Pooling. `"mean"` (the paper's average pooling, default) averages over valid positions.
      `"sum"` sums over valid positions only: the authors' code sums over all `L + 1` rows,
      *including* padded rows, whose outputs are not zero (a padded query still attends to the
      valid keys), so its result depends on the padding length; we do not reproduce that.
      `"max"` takes the maximum over valid positions. `"target"` keeps the output at the
      target's position only: the target's attention over its sequence, as a readout token.

    Since no position information is added here, the layer is permutation-equivariant over the
    sequence and the pooled output is invariant to the order of the valid items; position
    embeddings are added by `FeedbackInteraction` before this layer.

    Args:
        num_heads: attention heads; must divide the model width `d` (4 in the code).
        ffn_multiplier: hidden width of the feed-forward network, in multiples of `d`.
        dropout: dropout rate on the attention weights and on both sub-layer outputs.
        pooling: `"mean"`, `"sum"` or `"max"` over valid positions, or `"target"` (see above).
        norm_first: pre-norm instead of post-norm sub-layers.
        layer_norm_epsilon: epsilon of the layer normalizations.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        target: target item vector, `[B, d]`.
        sequence: feedback item vectors, `[B, L, d]`.
        sequence_mask: `[B, L]`, `True` at valid positions. `None` means the Keras mask
            attached to `sequence` if any (e.g. from `Embedding(mask_zero=True)`), else all
            valid. (Not named `mask`: Keras would treat it as a mask to propagate.)
        training: Python bool, whether dropout is active.

    Returns:
        The pooled interaction vector `f_s`, `[B, d]`.

    Example:

    >>> import numpy as np
    >>> layer = FeedbackTransformer(num_heads=2)
    >>> target = np.random.rand(3, 8).astype("float32")
    >>> clicks = np.random.rand(3, 5, 8).astype("float32")
    >>> mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)
    >>> layer(target, clicks, sequence_mask=mask).shape
    TensorShape([3, 8])

    References:
        - Xie et al., "Deep Feedback Network for Recommendation", IJCAI 2020.
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    def __init__(
        self,
        num_heads: int = 4,
        ffn_multiplier: int = 4,
        dropout: float = 0.0,
        pooling: str = "mean",
        norm_first: bool = False,
        layer_norm_epsilon: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_positive_int("num_heads", num_heads)
        _check_positive_int("ffn_multiplier", ffn_multiplier)
        _check_rate("dropout", dropout)
        _check_pooling(pooling)
        if not isinstance(norm_first, bool):
            raise ValueError(f"`norm_first` must be a bool. Received: norm_first={norm_first!r}")
        if not isinstance(layer_norm_epsilon, (int, float)) or layer_norm_epsilon <= 0:
            raise ValueError(
                f"`layer_norm_epsilon` must be a positive float. Received: layer_norm_epsilon={layer_norm_epsilon!r}"
            )
        self.num_heads = num_heads
        self.ffn_multiplier = ffn_multiplier
        self.dropout = float(dropout)
        self.pooling = pooling
        self.norm_first = norm_first
        self.layer_norm_epsilon = float(layer_norm_epsilon)

        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="attention_norm"
        )
        self.ffn_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="ffn_norm"
        )
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout"
        )
        self.attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="attention_dropout"
        )
        # Created in `build`, once the model width is known.
        self.attention: keras.layers.MultiHeadAttention | None = None
        self.ffn_inner: keras.layers.Dense | None = None
        self.ffn_outer: keras.layers.Dense | None = None

    def build(
        self, target_shape: tuple[int | None, ...], sequence_shape: tuple[int | None, ...]
    ) -> None:
        if len(target_shape) != 2 or len(sequence_shape) != 3:
            raise ValueError(
                "FeedbackTransformer expects target [batch, d] and sequence [batch, length, d]. "
                f"Received: target_shape={tuple(target_shape)}, sequence_shape={tuple(sequence_shape)}"
            )
        width = sequence_shape[-1]
        if width is None or target_shape[-1] != width:
            raise ValueError(
                "The target and the sequence items must have the same known width d. "
                f"Received: target_shape={tuple(target_shape)}, sequence_shape={tuple(sequence_shape)}"
            )
        if width % self.num_heads:
            raise ValueError(
                f"`num_heads` must divide the model width d={width}. Received: num_heads={self.num_heads}"
            )
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=width // self.num_heads,
            dropout=self.dropout,
            dtype=self.dtype_policy,
            name="self_attention",
        )
        self.ffn_inner = keras.layers.Dense(
            self.ffn_multiplier * width,
            activation="relu",
            dtype=self.dtype_policy,
            name="ffn_inner",
        )
        self.ffn_outer = keras.layers.Dense(width, dtype=self.dtype_policy, name="ffn_outer")

        length = None if sequence_shape[1] is None else sequence_shape[1] + 1
        stacked_shape = (sequence_shape[0], length, width)
        self.attention.build(stacked_shape, stacked_shape)
        self.attention_norm.build(stacked_shape)
        self.ffn_norm.build(stacked_shape)
        self.ffn_inner.build(stacked_shape)
        self.ffn_outer.build((sequence_shape[0], length, self.ffn_multiplier * width))
        self.built = True

    def call(
        self,
        target: Any,
        sequence: Any,
        sequence_mask: Any = None,
        training: bool | None = None,
    ) -> Any:
        mask = _as_bool_mask(sequence_mask, sequence)
        sequence = _zero_padding(sequence, mask)
        hidden = ops.concatenate([ops.expand_dims(target, 1), sequence], axis=1)  # [B, L+1, d]
        valid = ops.concatenate([ops.ones_like(mask[:, :1]), mask], axis=1)  # [B, L+1]
        # With target pooling only the target's row of the output is read, and in one
        # layer that row depends on the other rows only as keys and values: attention,
        # layer norms and the feed-forward network run for the target's query alone
        # (the same output, 1 query instead of L + 1).
        queries = 1 if self.pooling == "target" else None
        # Key mask [B, L+1 (queries), L+1 (keys)]: every query sees only the valid keys.
        attention_mask = ops.logical_and(ops.expand_dims(valid, 1), ops.expand_dims(valid, 2))

        def attend(x: Any) -> Any:
            if queries == 1:
                x = self._attend_one_query(x, valid, training)
            else:
                x = self.attention(x, x, attention_mask=attention_mask, training=training)
            return self.dropout_layer(x, training=training)

        def feed_forward(x: Any) -> Any:
            return self.dropout_layer(self.ffn_outer(self.ffn_inner(x)), training=training)

        if self.norm_first:
            hidden = hidden[:, :queries] + attend(self.attention_norm(hidden))
            hidden = hidden + feed_forward(self.ffn_norm(hidden))
        else:
            hidden = self.attention_norm(hidden[:, :queries] + attend(hidden))
            hidden = self.ffn_norm(hidden + feed_forward(hidden))
        return self._pool(hidden, valid)

    def _attend_one_query(self, x: Any, valid: Any, training: bool | None) -> Any:
        """`self.attention(x[:, :1], x, ...)` for the target's query alone: `[B, 1, d]`.

        The same weights and formula as `keras.layers.MultiHeadAttention` (scaled dot
        product, masked softmax over the keys, dropout on the weights, output
        projection), with one query written as products and sums over `[B, L+1, heads,
        key_dim]`: Keras' batched matrix products of one row by `L + 1` columns cost far
        more than the arithmetic, above all in the backward pass.
        """
        attention = self.attention
        key_dim = attention.key_dim
        query = attention.query_dense(x[:, :1])  # [B, 1, heads, key_dim]
        key = attention.key_dense(x)  # [B, L+1, heads, key_dim]
        value = attention.value_dense(x)
        scores = ops.sum(query * key, axis=-1) / ops.cast(ops.sqrt(key_dim), x.dtype)
        floor = ops.full_like(scores, _large_negative(scores.dtype))
        scores = ops.where(ops.expand_dims(valid, -1), scores, floor)  # [B, L+1, heads]
        weights = self.attention_dropout(ops.softmax(scores, axis=1), training=training)
        context = ops.sum(ops.expand_dims(weights, -1) * value, axis=1, keepdims=True)
        return attention.output_dense(context)  # [B, 1, d]

    def _pool(self, hidden: Any, valid: Any) -> Any:
        if self.pooling == "target":
            return hidden[:, 0]
        if self.pooling == "max":
            floor = ops.full_like(hidden, _large_negative(hidden.dtype))
            return ops.max(ops.where(ops.expand_dims(valid, -1), hidden, floor), axis=1)
        if self.pooling == "sum":
            return ops.sum(_zero_padding(hidden, valid), axis=1)
        return masked_mean(hidden, valid)

    def compute_output_shape(
        self, target_shape: tuple[int | None, ...], sequence_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        return (target_shape[0], sequence_shape[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "ffn_multiplier": self.ffn_multiplier,
                "dropout": self.dropout,
                "pooling": self.pooling,
                "norm_first": self.norm_first,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="widedeep")
class ClickAwareAttention(keras.layers.Layer):
    """External feedback interaction: DIN-style attention of a query over (unclick) items.

    For query `q` and items `x_i` (both of width `d`):

        a_i   = w2' ReLU(W1 [q; x_i; q * x_i; q - x_i] + b1) + b2
        alpha = softmax(a) over the valid positions
        out   = sum_i alpha_i x_i

    In DFN the items are the projected unclick items and the query is `f_c` (the pooled click
    interaction) or `f_d` (the pooled dislike interaction): the clicks and dislikes pick out
    the unclicks that look like real likes / dislikes ("click-aware denoising").

    Padded items are replaced by zeros and their scores by a large negative number before the
    softmax; the weights are then zeroed outside the valid positions, so a row without any valid
    position gives a zero vector (finite, with finite gradients). The authors' code also divides
    the scores by `sqrt(d)`; we do not, as `w2`, `b2` absorb any constant scale (DIN has none).

    Args:
        hidden_units: hidden layers of the scoring MLP (`[32]` in the DFN code: one layer;
            DIN uses two, e.g. `[64, 32]`).
        activation: activation of the scoring MLP's hidden layers.
        dropout: dropout rate inside the scoring MLP.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        query: `[B, d]`.
        values: items to attend over, `[B, L, d]` (keys and values are the same vectors).
        values_mask: `[B, L]`, `True` at valid positions. `None` means the Keras mask
            attached to `values` if any, else all valid.
        training: Python bool, whether dropout is active.

    Returns:
        `[B, d]`, the attention-weighted sum of the valid items.

    Example:

    >>> import numpy as np
    >>> attention = ClickAwareAttention(hidden_units=[16])
    >>> f_c = np.random.rand(2, 8).astype("float32")
    >>> unclicks = np.random.rand(2, 4, 8).astype("float32")
    >>> mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    >>> attention(f_c, unclicks, values_mask=mask).shape
    TensorShape([2, 8])

    References:
        - Xie et al., "Deep Feedback Network for Recommendation", IJCAI 2020.
        - Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018.
    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (32,),
        activation: str = "relu",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (
            isinstance(hidden_units, (str, bytes))
            or not isinstance(hidden_units, Sequence)
            or not hidden_units
        ):
            raise ValueError(
                f"`hidden_units` must be a non-empty list of positive ints. Received: hidden_units={hidden_units!r}"
            )
        _check_rate("dropout", dropout)
        self.hidden_units = list(hidden_units)
        self.activation = activation
        self.dropout = float(dropout)
        # MLP validates `hidden_units` and `activation`.
        self.scorer = MLP(
            hidden_units=self.hidden_units,
            activation=activation,
            dropout=self.dropout,
            output_units=1,
            dtype=self.dtype_policy,
            name="scorer",
        )

    def build(
        self, query_shape: tuple[int | None, ...], values_shape: tuple[int | None, ...]
    ) -> None:
        if len(query_shape) != 2 or len(values_shape) != 3:
            raise ValueError(
                "ClickAwareAttention expects query [batch, d] and values [batch, length, d]. "
                f"Received: query_shape={tuple(query_shape)}, values_shape={tuple(values_shape)}"
            )
        width = values_shape[-1]
        if width is None or query_shape[-1] != width:
            raise ValueError(
                "The query and the items must have the same known width d. "
                f"Received: query_shape={tuple(query_shape)}, values_shape={tuple(values_shape)}"
            )
        self.scorer.build((values_shape[0], values_shape[1], 4 * width))
        self.built = True

    def call(
        self, query: Any, values: Any, values_mask: Any = None, training: bool | None = None
    ) -> Any:
        mask = _as_bool_mask(values_mask, values)
        values = _zero_padding(values, mask)
        # W1 [q; x; q * x; q - x] = q (W_q + W_s) + x (W_x - W_s) + (q * x) W_m, with W1's
        # row blocks W_q, W_x, W_m, W_s: the query's part once per row, not once per item,
        # and no [B, L, 4d] concatenation (the same product, summed in another order).
        first = self.scorer.hidden_layers[0]
        w_q, w_x, w_m, w_s = ops.split(ops.cast(first.kernel, values.dtype), 4, axis=0)
        query_part = ops.matmul(query, w_q + w_s)
        if first.use_bias:
            query_part = query_part + ops.cast(first.bias, values.dtype)
        product = (
            ops.matmul(values, w_x - w_s)
            + ops.matmul(ops.expand_dims(query, 1) * values, w_m)
            + ops.expand_dims(query_part, 1)
        )  # [B, L, h]
        scores = ops.squeeze(
            self.scorer.call_after_first_product(product, training=training), axis=-1
        )  # [B, L]
        scores = ops.where(mask, scores, ops.full_like(scores, _large_negative(scores.dtype)))
        weights = ops.softmax(scores, axis=-1)
        # A row without valid positions gets a uniform softmax over its padding; zero those
        # weights (the padded values are zero already, so this keeps the weights exact).
        weights = ops.where(mask, weights, ops.zeros_like(weights))
        return ops.sum(ops.expand_dims(weights, -1) * values, axis=1)

    def compute_output_shape(
        self, query_shape: tuple[int | None, ...], values_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        return (query_shape[0], values_shape[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "hidden_units": list(self.hidden_units),
                "activation": self.activation,
                "dropout": self.dropout,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="widedeep")
class FeedbackInteraction(keras.layers.Layer):
    """The Deep Feedback Interaction Module of DFN: click, unclick and dislike sequences -> `f_Feed`.

    For each sequence `s` in (click, unclick, dislike) with items `x_i^s` of width `D_in` (the
    concatenated field embeddings of the item):

    1. Item vectors `z_i^s = [x_i^s; p_i^s] W_s`: the item concatenated with a learned
       embedding `p_i^s` of its position `i` (`position_dim` wide, one table per sequence),
       projected without bias by a per-sequence `W_s` to width `d = model_dim`, as in the
       authors' code. (Concatenating then projecting equals `x_i W_x + p_i W_p`: a learned
       `d`-wide position vector added after the projection.)
    2. The target item (same fields, no position) is projected with the *same* `W_s`, i.e.
       `t^s = [t; 0] W_s`: target and items are compared in the same space inside each
       Transformer, as in the code (where the target is the raw, unprojected item vector, in
       the same space as the items because there the projection keeps the width). A separate
       target projection would let attention learn item-vs-target similarity in mismatched
       spaces and add parameters for no gain.
    3. `f_s = FeedbackTransformer([t^s; z_1^s..z_L^s])`, pooled over valid positions (own
       weights per sequence).
    4. `f_cu = ClickAwareAttention(f_c, z^u)` and `f_du = ClickAwareAttention(f_d, z^u)`, over
       the projected unclick items. The authors' code uses separate attention weights for the
       two queries (default); `share_click_aware_attention=True` ties them.
    5. `f_Feed = [f_c; f_u; f_d; f_cu; f_du]`, `[B, 5d]` (`[B, 3d]` without the click-aware
       attention); see `output_dim`.

    `model_dim` defaults to 32: the paper uses 64, the code 16-wide field embeddings whose
    concatenation is the model width (e.g. 3 fields -> 48). Three Transformers over `L + 1`
    positions cost `O(L^2 d + L d^2)` each, so 32 (8 per head with 4 heads) keeps the module
    cheap on CPU while leaving each head a useful width; raise it for large data.

    Ablations. `use_<s>_transformer=False` removes the *internal interaction* of sequence `s`,
    not its signal: `f_s` becomes the masked mean of the projected items `z^s` (no target, no
    self-attention; zeros for an empty sequence), the usual sum/mean-pooled behaviour feature.
    This measures what the Transformer adds over plain pooling; removing a signal entirely is
    a feature-set change made in the model builder. `f_cu` / `f_du` still need a query: with
    the click / dislike Transformer off, the masked mean is that query.
    `use_click_aware_attention=False` drops `f_cu` and `f_du` (output `[B, 3d]`).

    Sequences may have different lengths `L_s`, which must be known when the layer is built
    (they size the position tables). Items are most-recent-first, so position 0 is the latest.

    Args:
        model_dim: width `d` of the projected items and of every output block.
        num_heads: attention heads of each Transformer; must divide `model_dim`.
        ffn_multiplier: Transformer feed-forward width, in multiples of `model_dim`.
        dropout: dropout rate inside the Transformers.
        pooling: `"mean"` (paper), `"sum"`, `"max"` or `"target"`; see `FeedbackTransformer`.
        norm_first: pre-norm instead of post-norm Transformer sub-layers.
        position_dim: width of the position embeddings; `None` means `model_dim`.
        attention_hidden_units: hidden layers of the click-aware attention's scoring MLP.
        attention_activation: activation of that MLP.
        share_click_aware_attention: one attention for both `f_cu` and `f_du`.
        use_click_transformer: internal interaction of the clicks (see Ablations).
        use_unclick_transformer: internal interaction of the unclicks.
        use_dislike_transformer: internal interaction of the dislikes.
        use_click_aware_attention: compute `f_cu` and `f_du`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a dict with
            `"target"`: `[B, D_in]`;
            `"click"`, `"unclick"`, `"dislike"`: item vectors `[B, L_s, D_in]`;
            `"click_mask"`, `"unclick_mask"`, `"dislike_mask"` (optional, all valid if
            absent): `[B, L_s]`, `True` at valid positions.
        training: Python bool, whether dropout is active.

    Returns:
        `f_Feed`, `[B, output_dim]`.

    Example:

    >>> import numpy as np
    >>> module = FeedbackInteraction(model_dim=8, num_heads=2)
    >>> batch, width = 2, 12
    >>> inputs = {"target": np.random.rand(batch, width).astype("float32")}
    >>> for name, length in [("click", 5), ("unclick", 7), ("dislike", 3)]:
    ...     inputs[name] = np.random.rand(batch, length, width).astype("float32")
    ...     inputs[f"{name}_mask"] = np.random.rand(batch, length) < 0.6
    >>> module(inputs).shape, module.output_dim
    (TensorShape([2, 40]), 40)

    References:
        - Xie et al., "Deep Feedback Network for Recommendation", IJCAI 2020.
        - Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018.
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    def __init__(
        self,
        model_dim: int = 32,
        num_heads: int = 4,
        ffn_multiplier: int = 4,
        dropout: float = 0.0,
        pooling: str = "mean",
        norm_first: bool = False,
        position_dim: int | None = None,
        attention_hidden_units: Sequence[int] = (32,),
        attention_activation: str = "relu",
        share_click_aware_attention: bool = False,
        use_click_transformer: bool = True,
        use_unclick_transformer: bool = True,
        use_dislike_transformer: bool = True,
        use_click_aware_attention: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_positive_int("model_dim", model_dim)
        _check_positive_int("num_heads", num_heads)
        if model_dim % num_heads:
            raise ValueError(
                f"`num_heads` must divide `model_dim`. Received: model_dim={model_dim}, num_heads={num_heads}"
            )
        _check_positive_int("ffn_multiplier", ffn_multiplier)
        _check_rate("dropout", dropout)
        _check_pooling(pooling)
        if position_dim is not None:
            _check_positive_int("position_dim", position_dim)
        if (
            isinstance(attention_hidden_units, (str, bytes))
            or not isinstance(attention_hidden_units, Sequence)
            or not attention_hidden_units
        ):
            raise ValueError(
                "`attention_hidden_units` must be a non-empty list of positive ints. "
                f"Received: attention_hidden_units={attention_hidden_units!r}"
            )
        for name, value in [
            ("norm_first", norm_first),
            ("share_click_aware_attention", share_click_aware_attention),
            ("use_click_transformer", use_click_transformer),
            ("use_unclick_transformer", use_unclick_transformer),
            ("use_dislike_transformer", use_dislike_transformer),
            ("use_click_aware_attention", use_click_aware_attention),
        ]:
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")

        self.model_dim = model_dim
        self.num_heads = num_heads
        self.ffn_multiplier = ffn_multiplier
        self.dropout = float(dropout)
        self.pooling = pooling
        self.norm_first = norm_first
        self.position_dim = position_dim
        self.attention_hidden_units = list(attention_hidden_units)
        self.attention_activation = attention_activation
        self.share_click_aware_attention = share_click_aware_attention
        self.use_click_transformer = use_click_transformer
        self.use_unclick_transformer = use_unclick_transformer
        self.use_dislike_transformer = use_dislike_transformer
        self.use_click_aware_attention = use_click_aware_attention

        def transformer(sequence: str) -> FeedbackTransformer:
            return FeedbackTransformer(
                num_heads=num_heads,
                ffn_multiplier=ffn_multiplier,
                dropout=dropout,
                pooling=pooling,
                norm_first=norm_first,
                dtype=self.dtype_policy,
                name=f"{sequence}_transformer",
            )

        self.click_transformer = transformer("click") if use_click_transformer else None
        self.unclick_transformer = transformer("unclick") if use_unclick_transformer else None
        self.dislike_transformer = transformer("dislike") if use_dislike_transformer else None

        def attention(name: str) -> ClickAwareAttention:
            return ClickAwareAttention(
                hidden_units=self.attention_hidden_units,
                activation=attention_activation,
                dtype=self.dtype_policy,
                name=name,
            )

        self.click_unclick_attention: ClickAwareAttention | None = None
        self.dislike_unclick_attention: ClickAwareAttention | None = None
        if use_click_aware_attention:
            if share_click_aware_attention:
                shared = attention("click_aware_attention")
                self.click_unclick_attention = self.dislike_unclick_attention = shared
            else:
                self.click_unclick_attention = attention("click_unclick_attention")
                self.dislike_unclick_attention = attention("dislike_unclick_attention")

        self.position_embeddings: dict[str, Any] = {}
        self.projections: dict[str, Any] = {}
        self.item_dim: int | None = None

    @property
    def output_dim(self) -> int:
        """Width of `f_Feed`: `5 * model_dim`, or `3 * model_dim` without click-aware attention."""
        return self.model_dim * (5 if self.use_click_aware_attention else 3)

    def _transformer(self, sequence: str) -> FeedbackTransformer | None:
        return getattr(self, f"{sequence}_transformer")

    def build(self, inputs_shape: dict[str, tuple[int | None, ...]]) -> None:
        if not isinstance(inputs_shape, dict):
            raise ValueError(
                "FeedbackInteraction expects a dict of inputs with keys 'target', "
                f"{', '.join(repr(s) for s in FEEDBACK_SEQUENCES)} (and optional '<sequence>_mask'). "
                f"Received: inputs_shape={inputs_shape!r}"
            )
        missing = [k for k in ("target", *FEEDBACK_SEQUENCES) if k not in inputs_shape]
        if missing:
            raise ValueError(
                f"FeedbackInteraction inputs lack {missing}. Received keys: {sorted(inputs_shape)}"
            )
        target_shape = tuple(inputs_shape["target"])
        if len(target_shape) != 2 or target_shape[-1] is None:
            raise ValueError(
                f"The target must have shape [batch, D_in] with a known D_in. Received: target_shape={target_shape}"
            )
        item_dim = target_shape[-1]
        position_dim = self.position_dim or self.model_dim
        for sequence in FEEDBACK_SEQUENCES:
            shape = tuple(inputs_shape[sequence])
            if len(shape) != 3 or shape[1] is None or shape[2] != item_dim:
                raise ValueError(
                    f"The '{sequence}' items must have shape [batch, length, D_in] with a known length "
                    f"and the target's D_in={item_dim}. Received: {sequence}_shape={shape}"
                )
            length = shape[1]
            self.position_embeddings[sequence] = self.add_weight(
                shape=(length, position_dim),
                initializer="uniform",
                name=f"{sequence}_position_embedding",
            )
            self.projections[sequence] = self.add_weight(
                shape=(item_dim + position_dim, self.model_dim),
                initializer="glorot_uniform",
                name=f"{sequence}_projection",
            )
            projected_shape = (shape[0], length, self.model_dim)
            transformer = self._transformer(sequence)
            if transformer is not None:
                transformer.build((shape[0], self.model_dim), projected_shape)
            if sequence == "unclick" and self.use_click_aware_attention:
                query_shape = (shape[0], self.model_dim)
                self.click_unclick_attention.build(query_shape, projected_shape)
                if not self.dislike_unclick_attention.built:
                    self.dislike_unclick_attention.build(query_shape, projected_shape)
        self.item_dim = item_dim
        super().build(inputs_shape)

    def _project(self, sequence: str, items: Any, mask: Any) -> Any:
        """`[x_i; p_i] W_s` for every position, zero at padded positions: `[B, L, d]`."""
        items = _zero_padding(items, mask)
        table = ops.cast(self.position_embeddings[sequence], items.dtype)
        weights = self.projections[sequence]
        # [x_i; p_i] W = x_i W_items + p_i W_positions: the positions' part is computed
        # once per position, not once per row and position.
        positions = ops.matmul(table, weights[self.item_dim :])  # [L, d]
        projected = ops.matmul(items, weights[: self.item_dim]) + positions
        return _zero_padding(projected, mask)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        target = inputs["target"]
        pooled: dict[str, Any] = {}
        projected: dict[str, Any] = {}
        masks: dict[str, Any] = {}
        for sequence in FEEDBACK_SEQUENCES:
            items = inputs[sequence]
            mask = _as_bool_mask(inputs.get(f"{sequence}_mask"), items)
            masks[sequence] = mask
            projected[sequence] = self._project(sequence, items, mask)
            transformer = self._transformer(sequence)
            if transformer is None:
                pooled[sequence] = masked_mean(projected[sequence], mask)
            else:
                # [t; 0] W_s: the target through the item rows of the sequence's projection.
                target_projection = self.projections[sequence][: self.item_dim]
                projected_target = ops.matmul(target, target_projection)
                pooled[sequence] = transformer(
                    projected_target, projected[sequence], sequence_mask=mask, training=training
                )
        blocks = [pooled[s] for s in FEEDBACK_SEQUENCES]
        if self.use_click_aware_attention:
            unclicks, unclick_mask = projected["unclick"], masks["unclick"]
            blocks.append(
                self.click_unclick_attention(
                    pooled["click"], unclicks, values_mask=unclick_mask, training=training
                )
            )
            blocks.append(
                self.dislike_unclick_attention(
                    pooled["dislike"], unclicks, values_mask=unclick_mask, training=training
                )
            )
        return ops.concatenate(blocks, axis=-1)

    def compute_output_shape(
        self, inputs_shape: dict[str, tuple[int | None, ...]]
    ) -> tuple[int | None, ...]:
        return (tuple(inputs_shape["target"])[0], self.output_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "model_dim": self.model_dim,
                "num_heads": self.num_heads,
                "ffn_multiplier": self.ffn_multiplier,
                "dropout": self.dropout,
                "pooling": self.pooling,
                "norm_first": self.norm_first,
                "position_dim": self.position_dim,
                "attention_hidden_units": list(self.attention_hidden_units),
                "attention_activation": self.attention_activation,
                "share_click_aware_attention": self.share_click_aware_attention,
                "use_click_transformer": self.use_click_transformer,
                "use_unclick_transformer": self.use_unclick_transformer,
                "use_dislike_transformer": self.use_dislike_transformer,
                "use_click_aware_attention": self.use_click_aware_attention,
            }
        )
        return config
