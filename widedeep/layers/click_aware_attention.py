"""`ClickAwareAttention`: DFN's external feedback interaction, DIN-style attention."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from widedeep.layers._feedback_common import (
    as_bool_mask,
    check_rate,
    check_units,
    pack_valid,
    row_sum,
    segment_softmax,
    shared_width,
    take_rows,
)
from widedeep.layers.mlp import MLP


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

    Only the valid items are read (gathered into a packed `[N, d]` tensor), and the softmax runs
    over each row's valid items, so a row without any valid position gives a zero vector
    (finite, with finite gradients). The authors' code also divides
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
        check_units("hidden_units", hidden_units)
        check_rate("dropout", dropout)
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
        width = shared_width(
            "ClickAwareAttention", ("query", query_shape), ("values", values_shape)
        )
        self.scorer.build((values_shape[0], values_shape[1], 4 * width))
        self.built = True

    def call(
        self, query: Any, values: Any, values_mask: Any = None, training: bool | None = None
    ) -> Any:
        mask = as_bool_mask(values_mask, values)
        items, rows, _ = pack_valid(values, mask)
        return self.call_packed(query, items, rows, training=training)

    def call_packed(self, query: Any, items: Any, rows: Any, training: bool | None = None) -> Any:
        """The attention over the valid items alone, packed: `[B, d]`.

        Args:
            query: `[B, d]`.
            items: the valid items, `[N, d]`.
            rows: the batch row of each item, `[N]` (see `pack_valid`).
            training: whether dropout is active.
        """
        dtype = items.dtype
        # W1 [q; x; q * x; q - x] = q (W_q + W_s) + x (W_x - W_s) + (q * x) W_m, with W1's
        # row blocks W_q, W_x, W_m, W_s: the query's part once per row, not once per item,
        # and no [N, 4d] concatenation (the same product, summed in another order).
        first = self.scorer.hidden_layers[0]
        w_q, w_x, w_m, w_s = ops.split(ops.cast(first.kernel, dtype), 4, axis=0)
        query_part = ops.matmul(query, w_q + w_s)
        if first.use_bias:
            query_part = query_part + ops.cast(first.bias, dtype)
        product = (
            ops.matmul(items, w_x - w_s)
            + ops.matmul(take_rows(query, rows) * items, w_m)
            + take_rows(query_part, rows)
        )  # [N, h]
        scores = ops.squeeze(
            self.scorer.call_after_first_product(product, training=training), axis=-1
        )  # [N]
        batch = ops.shape(query)[0]
        weights, _ = segment_softmax(scores, rows, batch)
        # A row without valid items has no weights: its output is a zero vector.
        return row_sum(ops.expand_dims(weights, -1) * items, rows, batch)

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
