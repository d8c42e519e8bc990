"""The Deep Feedback Interaction Module of DFN (Xie et al., IJCAI 2020), as Keras layers.

Three layers, composable on their own:

* `FeedbackTransformer` (`widedeep.layers.feedback_transformer`) — *internal* feedback
  interaction: one Transformer layer over the target item prepended to one feedback
  sequence, then masked pooling -> `f_s`.
* `ClickAwareAttention` (`widedeep.layers.click_aware_attention`) — *external* feedback
  interaction: DIN-style attention of a query (`f_c` or `f_d`) over the noisy unclick
  items -> `f_cu` / `f_du`.
* `FeedbackInteraction` (this module) — the whole module: per-sequence position embeddings
  and projections, the three Transformers, the two click-aware attentions, output
  `[f_c; f_u; f_d; f_cu; f_du]`.

All three follow one masking convention (`widedeep.layers._feedback_common`): no output
depends on the values stored at padded positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from widedeep.errors import UsageError
from widedeep.layers._feedback_common import (
    as_bool_mask,
    check_pooling,
    check_positive_int,
    check_rate,
    check_units,
    pack_valid,
    segment_mean,
    unpack,
)
from widedeep.layers.click_aware_attention import ClickAwareAttention
from widedeep.layers.feedback_transformer import FeedbackTransformer
from widedeep.schema import FEEDBACK_SEQUENCES


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

    Defaults. They are DFN's (`widedeep.models.dfn.DFN_DEFAULTS` reads them from this
    signature), measured on the simulated data with Adagrad:

    * `model_dim=16` with 2 heads of 8 dimensions. The paper uses 64; the authors' code uses
      16-wide field embeddings whose concatenation is its model width (e.g. 3 fields -> 48).
      The module's cost grows with `d` and with the number of *valid* feedback items in a
      batch (it computes on those alone, not on the padding; see `benchmarks/feedback_step.py`).
      Raise it for large data.
    * `pooling="target"`: each Transformer's output at the target's position (the target's
      attention over its feedback) instead of the paper's average over all positions; it
      learned the feedback faster (a higher test AUC after 2 epochs than `"mean"`).
    * `norm_first=True` (pre-norm sub-layers): with post-norm, Adagrad at our learning rates
      trained the module into a feature that *lowered* test AUC below plain Wide & Deep,
      while pre-norm raised it; the residual stream keeps the pooled item vectors.

    The measurements behind these choices are in `docs/design-history.md`.

    The paper's Transformer is `pooling="mean", norm_first=False`.

    Ablations. `use_<s>_transformer=False` removes the *internal interaction* of sequence `s`,
    not its signal: `f_s` becomes the masked mean of the projected items `z^s` (no target, no
    self-attention; zeros for an empty sequence), the usual sum/mean-pooled behaviour feature.
    This measures what the Transformer adds over plain pooling; removing a signal entirely is
    a feature-set change made in the model builder. `f_cu` / `f_du` still need a query: with
    the click / dislike Transformer off, the masked mean is that query.
    `use_click_aware_attention=False` drops `f_cu` and `f_du` (output `[B, 3d]`).

    Sequences may have different lengths `L_s`, which must be known when the layer is built
    (they size the position tables). Items are most-recent-first, so position 0 is the latest.
    Only the valid items are read: they are gathered into packed `[N, D_in]` tensors with the
    batch row of each, and every per-item step (projection, keys and values, attention
    scores, the click-aware scoring MLP) runs on those `N` rows, with softmaxes and sums per
    batch row. Feedback sequences are mostly padding (about two thirds of the positions on
    the simulator's data, 96% on the KuaiRand log), and that padding costs nothing.

    Args:
        model_dim: width `d` of the projected items and of every output block.
        num_heads: attention heads of each Transformer; must divide `model_dim`.
        ffn_multiplier: Transformer feed-forward width, in multiples of `model_dim`.
        dropout: dropout rate inside the Transformers.
        pooling: `"target"`, or `"mean"` (paper), `"sum"`, `"max"`; see `FeedbackTransformer`.
        norm_first: pre-norm (default) instead of post-norm Transformer sub-layers.
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
        model_dim: int = 16,
        num_heads: int = 2,
        ffn_multiplier: int = 4,
        dropout: float = 0.0,
        pooling: str = "target",
        norm_first: bool = True,
        position_dim: int | None = None,
        attention_hidden_units: Sequence[int] = (32,),
        attention_activation: str = "relu",
        share_click_aware_attention: bool = False,
        use_click_transformer: bool = True,
        use_unclick_transformer: bool = True,
        use_dislike_transformer: bool = True,
        use_click_aware_attention: bool = True,
        residual_gate: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_positive_int("model_dim", model_dim)
        check_positive_int("num_heads", num_heads)
        if model_dim % num_heads:
            raise UsageError(
                f"`num_heads` must divide `model_dim`. Received: model_dim={model_dim}, num_heads={num_heads}"
            )
        check_positive_int("ffn_multiplier", ffn_multiplier)
        check_rate("dropout", dropout)
        check_pooling(pooling)
        if position_dim is not None:
            check_positive_int("position_dim", position_dim)
        check_units("attention_hidden_units", attention_hidden_units)
        for name, value in [
            ("norm_first", norm_first),
            ("share_click_aware_attention", share_click_aware_attention),
            ("use_click_transformer", use_click_transformer),
            ("use_unclick_transformer", use_unclick_transformer),
            ("use_dislike_transformer", use_dislike_transformer),
            ("use_click_aware_attention", use_click_aware_attention),
            ("residual_gate", residual_gate),
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
        self.residual_gate = residual_gate

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
        self.gates: dict[str, Any] = {}
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
                if self.residual_gate:
                    self.gates[sequence] = self.add_weight(
                        shape=(self.model_dim,), initializer="zeros", name=f"{sequence}_gate"
                    )
            if sequence == "unclick" and self.use_click_aware_attention:
                query_shape = (shape[0], self.model_dim)
                self.click_unclick_attention.build(query_shape, projected_shape)
                if not self.dislike_unclick_attention.built:
                    self.dislike_unclick_attention.build(query_shape, projected_shape)
        self.item_dim = item_dim
        super().build(inputs_shape)

    def _project(self, sequence: str, items: Any, positions: Any) -> Any:
        """`[x_i; p_i] W_s` for the valid items `[N, D_in]` at `positions` `[N]`: `[N, d]`."""
        table = ops.cast(self.position_embeddings[sequence], items.dtype)
        weights = self.projections[sequence]
        # [x_i; p_i] W = x_i W_items + p_i W_positions: the positions' part is computed
        # once per position, not once per item.
        position_part = ops.matmul(table, weights[self.item_dim :])  # [L, d]
        # Each item's row of it, as a product with the one-hot positions (whose gradient
        # is a product too, not a scatter-add per item).
        one_hot = ops.one_hot(positions, ops.shape(table)[0], dtype=items.dtype)  # [N, L]
        return ops.matmul(items, weights[: self.item_dim]) + ops.matmul(one_hot, position_part)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        target = inputs["target"]
        batch = ops.shape(target)[0]
        pooled: dict[str, Any] = {}
        projected: dict[str, Any] = {}
        for sequence in FEEDBACK_SEQUENCES:
            values = inputs[sequence]
            mask = as_bool_mask(inputs.get(f"{sequence}_mask"), values)
            # Only the valid items are read and computed on: feedback sequences are
            # mostly padding.
            items, rows, positions = pack_valid(values, mask)
            items = self._project(sequence, items, positions)
            projected[sequence] = (items, rows)
            transformer = self._transformer(sequence)
            mean = segment_mean(items, rows, batch)
            if transformer is None:
                pooled[sequence] = mean
                continue
            # [t; 0] W_s: the target through the item rows of the sequence's projection.
            target_projection = self.projections[sequence][: self.item_dim]
            projected_target = ops.matmul(target, target_projection)
            if transformer.pooling == "target":
                interaction = transformer.call_packed(
                    projected_target, items, rows, training=training
                )
            else:  # every position is a query: the full encoder over [B, L + 1, d]
                interaction = transformer(
                    projected_target, unpack(items, mask), sequence_mask=mask, training=training
                )
            if self.residual_gate:
                # The plain mean plus a gated interaction, zero for an empty sequence.
                has_items = ops.any(mask, axis=1, keepdims=True)
                gated = ops.cast(has_items, interaction.dtype) * interaction
                interaction = mean + ops.cast(self.gates[sequence], interaction.dtype) * gated
            pooled[sequence] = interaction
        blocks = [pooled[s] for s in FEEDBACK_SEQUENCES]
        if self.use_click_aware_attention:
            unclicks, unclick_rows = projected["unclick"]
            blocks.append(
                self.click_unclick_attention.call_packed(
                    pooled["click"], unclicks, unclick_rows, training=training
                )
            )
            blocks.append(
                self.dislike_unclick_attention.call_packed(
                    pooled["dislike"], unclicks, unclick_rows, training=training
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
                "residual_gate": self.residual_gate,
            }
        )
        return config
