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
    shared_width,
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
      Transformers pre-norm by default (see its docstring for the measurements).
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
        sequence = zero_padding(sequence, mask)
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
        floor = ops.full_like(scores, large_negative(scores.dtype))
        scores = ops.where(ops.expand_dims(valid, -1), scores, floor)  # [B, L+1, heads]
        weights = self.attention_dropout(ops.softmax(scores, axis=1), training=training)
        context = ops.sum(ops.expand_dims(weights, -1) * value, axis=1, keepdims=True)
        return attention.output_dense(context)  # [B, 1, d]

    def _pool(self, hidden: Any, valid: Any) -> Any:
        if self.pooling == "target":
            return hidden[:, 0]
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
