"""`FeedbackTransformer`: DFN's internal feedback interaction, one Transformer layer, pooled."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from widedeep.layers._feedback_common import (
    as_bool_mask,
    check_pooling,
    check_positive_int,
    check_rate,
    large_negative,
    pack_valid,
    row_sum,
    segment_softmax,
    shared_width,
    take_rows,
    zero_padding,
)
from widedeep.layers.pooling import masked_mean


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
      al.: post-norm, `LayerNorm(x + Sublayer(x))`, by default (`norm_first=False`), or the
      pre-norm variant `x + Sublayer(LayerNorm(x))` (`norm_first=True`). In DFN, trained with
      Adagrad, post-norm *hurt* and pre-norm helped: `FeedbackInteraction` builds its
      Transformers pre-norm by default (see its docstring).
    * Pooling. `"mean"` (the paper's average pooling, this layer's default) averages over
      valid positions.
      `"sum"` sums over valid positions only: the authors' code sums over all `L + 1` rows,
      *including* padded rows, whose outputs are not zero (a padded query still attends to the
      valid keys), so its result depends on the padding length; we do not reproduce that.
      `"max"` takes the maximum over valid positions. `"target"` keeps the output at the
      target's position only: the target's attention over its sequence, as a readout token
      (`FeedbackInteraction`'s default, which learned the feedback faster).

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
        check_positive_int("num_heads", num_heads)
        check_positive_int("ffn_multiplier", ffn_multiplier)
        check_rate("dropout", dropout)
        check_pooling(pooling)
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
        width = shared_width(
            "FeedbackTransformer", ("target", target_shape), ("sequence", sequence_shape)
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
        mask = as_bool_mask(sequence_mask, sequence)
        if self.pooling == "target":
            items, rows, _ = pack_valid(sequence, mask)
            return self.call_packed(target, items, rows, training=training)
        sequence = zero_padding(sequence, mask)
        hidden = ops.concatenate([ops.expand_dims(target, 1), sequence], axis=1)  # [B, L+1, d]
        valid = ops.concatenate([ops.ones_like(mask[:, :1]), mask], axis=1)  # [B, L+1]
        # Key mask [B, L+1 (queries), L+1 (keys)]: every query sees only the valid keys.
        attention_mask = ops.logical_and(ops.expand_dims(valid, 1), ops.expand_dims(valid, 2))

        def attend(x: Any) -> Any:
            x = self.attention(x, x, attention_mask=attention_mask, training=training)
            return self.dropout_layer(x, training=training)

        if self.norm_first:
            hidden = hidden + attend(self.attention_norm(hidden))
            hidden = hidden + self._feed_forward(self.ffn_norm(hidden), training)
        else:
            hidden = self.attention_norm(hidden + attend(hidden))
            hidden = self.ffn_norm(hidden + self._feed_forward(hidden, training))
        return self._pool(hidden, valid)

    def call_packed(self, target: Any, items: Any, rows: Any, training: bool | None = None) -> Any:
        """The `"target"`-pooled output from the valid items alone: `[B, d]`.

        With target pooling only the target's row of the encoder's output is read, and in
        one layer that row depends on the other rows only as keys and values: attention,
        layer norms and the feed-forward network run for the target's query alone, over
        the valid items only (the same output as the full encoder's row 0).

        Args:
            target: `[B, d]`.
            items: the valid sequence items, packed, `[N, d]`.
            rows: the batch row of each item, `[N]` (see `pack_valid`).
            training: whether dropout is active.
        """
        if self.pooling != "target":
            raise ValueError(
                f"call_packed needs pooling='target'. Received: pooling={self.pooling!r}"
            )
        if self.norm_first:
            attended = self._attend_target(
                self.attention_norm(target), self.attention_norm(items), rows, training
            )
            hidden = target + self.dropout_layer(attended, training=training)
            return hidden + self._feed_forward(self.ffn_norm(hidden), training)
        attended = self._attend_target(target, items, rows, training)
        hidden = self.attention_norm(target + self.dropout_layer(attended, training=training))
        return self.ffn_norm(hidden + self._feed_forward(hidden, training))

    def _feed_forward(self, x: Any, training: bool | None) -> Any:
        return self.dropout_layer(self.ffn_outer(self.ffn_inner(x)), training=training)

    def _attend_target(self, target: Any, items: Any, rows: Any, training: bool | None) -> Any:
        """`self.attention(t, [t; x_valid])` for the target's query alone: `[B, d]`.

        The same weights and formula as `keras.layers.MultiHeadAttention` (scaled dot
        product, softmax over the target and the valid items, dropout on the weights,
        output projection), written as plain matrix products over the packed items
        (`[N, d] @ [d, heads * key_dim]`) and segment sums per batch row.
        """
        attention = self.attention
        heads, key_dim = attention.num_heads, attention.key_dim
        dtype = target.dtype

        def project(dense: Any, x: Any) -> Any:  # EinsumDense "abc,cde->abde" on [rows, d]
            kernel = ops.reshape(ops.cast(dense.kernel, dtype), (-1, heads * key_dim))
            out = ops.matmul(x, kernel)
            if dense.bias is not None:
                out = out + ops.reshape(ops.cast(dense.bias, dtype), (-1,))
            return out  # [rows, heads * key_dim]

        def per_head(x: Any) -> Any:
            return ops.reshape(x, (-1, heads, key_dim))

        scale = ops.cast(1.0 / ops.sqrt(key_dim), dtype)
        query = per_head(project(attention.query_dense, target) * scale)  # [B, heads, key_dim]
        target_keys = per_head(project(attention.key_dense, target))
        item_keys = per_head(project(attention.key_dense, items))  # [N, heads, key_dim]
        target_scores = ops.sum(query * target_keys, axis=-1)  # [B, heads]
        item_scores = ops.sum(take_rows(query, rows) * item_keys, axis=-1)  # [N, heads]
        batch = ops.shape(target)[0]
        item_weights, target_weights = segment_softmax(item_scores, rows, batch, target_scores)
        item_weights = self.attention_dropout(item_weights, training=training)
        target_weights = self.attention_dropout(target_weights, training=training)
        target_values = per_head(project(attention.value_dense, target))
        item_values = per_head(project(attention.value_dense, items))
        context = ops.expand_dims(target_weights, -1) * target_values + row_sum(
            ops.expand_dims(item_weights, -1) * item_values, rows, batch
        )  # [B, heads, key_dim]
        output_dense = attention.output_dense
        kernel = ops.reshape(ops.cast(output_dense.kernel, dtype), (heads * key_dim, -1))
        output = ops.matmul(ops.reshape(context, (-1, heads * key_dim)), kernel)
        if output_dense.bias is not None:
            output = output + ops.cast(output_dense.bias, dtype)
        return output  # [B, d]

    def _pool(self, hidden: Any, valid: Any) -> Any:
        # "target" never gets here: `call` hands it to `call_packed`.
        if self.pooling == "max":
            floor = ops.full_like(hidden, large_negative(hidden.dtype))
            return ops.max(ops.where(ops.expand_dims(valid, -1), hidden, floor), axis=1)
        if self.pooling == "sum":
            return ops.sum(zero_padding(hidden, valid), axis=1)
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
