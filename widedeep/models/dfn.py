"""Builder of the Deep Feedback Network (DFN) from a schema and hyper-parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from widedeep.features import FeatureGraph
from widedeep.layers.feedback import FeedbackInteraction
from widedeep.layers.fm import FactorizationMachine
from widedeep.layers.history import HistoryStatistics
from widedeep.layers.mlp import MLP
from widedeep.models.base import WIDE_BRANCH, WideDeepModel
from widedeep.models.wide_deep import logits_to_probability
from widedeep.schema import Schema

FEEDBACK_SEQUENCES = ("click", "unclick", "dislike")

DFN_DEFAULTS: dict[str, Any] = {
    "model_dim": 16,
    "num_heads": 2,
    "ffn_multiplier": 4,
    "pooling": "target",
    "norm_first": True,
    "transformer_dropout": 0.0,
    "attention_hidden_units": [32],
    "sequence_length": 0,
    "use_click_transformer": True,
    "use_unclick_transformer": True,
    "use_dislike_transformer": True,
    "use_click_aware_attention": True,
    "use_fm": True,
    "use_wide": True,
    "use_history_statistics": True,
}
"""DFN-specific hyper-parameters and their defaults (each is a `build_dfn` keyword and a CLI flag).

`sequence_length=0` keeps the schema's `max_length`; a smaller value keeps only the
most recent positions. `use_history_statistics=True` also feeds the deep MLP the
counts of the three sequences (`widedeep.layers.HistoryStatistics`), which pooling
normalises away (measured in the README's real-data section).

Choices against the paper (embedding 64, MLP 32-16, Adam, batch 64) and the authors'
code (embedding 16, Adagrad lr 0.01 with initial accumulator 1e-6, batch 256):
`model_dim=16` as in the code, with 2 heads of 8 dimensions. `pooling="target"`: each
Transformer's output at the target's position (the target's attention over its
feedback) instead of the paper's average over all positions; on the simulated data
it learned the feedback faster (test AUC after 2 epochs 0.7096 against 0.7020 for
`"mean"`, seed 0), and `pooling="mean"` stays one flag away. `norm_first=True`
(pre-norm Transformer sub-layers): with post-norm, Adagrad at our learning rates
trained the feedback module into a feature that *lowered* test AUC below plain
Wide & Deep on the simulated data (0.673 vs 0.679), while pre-norm raised it
(0.706 after 2 epochs); the residual stream keeps the pooled item vectors. The three Transformers
dominate the cost of a step (the feed-forward layers above all); at `model_dim=32` a
step of 512 impressions with L = 30 took about 310 ms on 2 CPU cores, at 16 about a
quarter of that (see `benchmarks/throughput.py`). Embeddings default to 8 wide, the
deep MLP to 128-64: our simulated data are far smaller than WeChat's logs.
"""


@keras.saving.register_keras_serializable(package="widedeep")
class TakeFirst(keras.layers.Layer):
    """Keeps the first `length` positions of a `[B, L, ...]` tensor (the most recent items)."""

    def __init__(self, length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = length

    def call(self, inputs: Any) -> Any:
        return inputs[:, : self.length]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.length, *input_shape[2:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length}


def build_dfn(
    schema: Schema,
    *,
    embedding_dim: int = 8,
    hidden_units: Sequence[int] = (128, 64),
    dropout: float = 0.0,
    use_batch_norm: bool = False,
    name: str = "dfn",
    **feedback: Any,
) -> WideDeepModel:
    """Builds a Deep Feedback Network: wide + FM + deep over features and user feedback.

    The feedback module (`widedeep.layers.feedback.FeedbackInteraction`) turns the
    click, unclick and dislike sequences into `f_Feed = [f_c; f_u; f_d; f_cu; f_du]`.
    Three logits are summed before the sigmoid:

    * wide: the linear branch over one-hot and crossed features (FTRL);
    * FM: the bi-interaction vector of all field embeddings and the blocks of
      `f_Feed` (each projected to the embedding width), followed by a linear
      layer that starts at zero;
    * deep: an MLP over all field embeddings, dense features and `f_Feed`.

    Everything but the wide branch trains with the deep optimizer (Adagrad).

    Args:
        schema: a `Schema` with `target_item_features` and the three sequences
            `click`, `unclick`, `dislike`.
        embedding_dim: one width for every field embedding (the FM needs one).
            Default 8: the paper uses 64 and the code 16, both on far larger data.
        hidden_units: deep MLP widths (paper: 32, 16).
        dropout: dropout in the deep MLP.
        use_batch_norm: batch normalisation in the deep MLP.
        name: the model's name.
        **feedback: any of `DFN_DEFAULTS` (feedback module settings and the
            ablation switches `use_*`).

    Returns:
        An uncompiled `WideDeepModel`.

    References:
        Xie et al., "Deep Feedback Network for Recommendation", IJCAI 2020.
    """
    unknown = sorted(set(feedback) - set(DFN_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown DFN hyper-parameters {unknown}; known: {sorted(DFN_DEFAULTS)}")
    hp = {**DFN_DEFAULTS, **feedback}
    names = {s.name for s in schema.sequences}
    missing = [s for s in FEEDBACK_SEQUENCES if s not in names]
    if missing or not schema.target_item_features:
        raise ValueError(
            f"DFN needs the sequences {list(FEEDBACK_SEQUENCES)} and target_item_features in the schema; "
            f"missing sequences: {missing}"
        )
    graph = FeatureGraph(schema, embedding_dim=embedding_dim)

    module_inputs: dict[str, keras.KerasTensor] = {"target": graph.item_vector()}
    full_masks = []
    for seq_name in FEEDBACK_SEQUENCES:
        vectors, mask = graph.sequence_vectors(seq_name)
        full_masks.append(mask)
        length = hp["sequence_length"]
        if length and length < schema.sequence(seq_name).max_length:
            vectors = TakeFirst(length, name=f"{seq_name}_recent")(vectors)
            mask = TakeFirst(length, name=f"{seq_name}_recent_mask")(mask)
        module_inputs[seq_name] = vectors
        module_inputs[f"{seq_name}_mask"] = mask
    module = FeedbackInteraction(
        model_dim=hp["model_dim"],
        num_heads=hp["num_heads"],
        ffn_multiplier=hp["ffn_multiplier"],
        dropout=hp["transformer_dropout"],
        pooling=hp["pooling"],
        norm_first=hp["norm_first"],
        attention_hidden_units=hp["attention_hidden_units"],
        use_click_transformer=hp["use_click_transformer"],
        use_unclick_transformer=hp["use_unclick_transformer"],
        use_dislike_transformer=hp["use_dislike_transformer"],
        use_click_aware_attention=hp["use_click_aware_attention"],
        name="feedback",
    )
    f_feed = module(module_inputs)

    logits = []
    if hp["use_wide"]:
        logits.append(graph.wide_logit(name=WIDE_BRANCH))
    fields = graph.field_embeddings()
    if hp["use_fm"]:
        blocks = module.output_dim // hp["model_dim"]
        feedback_fields = keras.layers.Reshape((blocks, hp["model_dim"]), name="feedback_fields")(
            f_feed
        )
        # The pooled Transformer outputs are O(1) at initialisation while the field
        # embeddings start near 0.05: squared inside the FM they dominated the logit
        # and the loss diverged at our Adagrad rates. A projection initialised at the
        # embeddings' scale, and an FM output layer starting at zero, start the FM
        # as a no-op that training grows.
        feedback_fields = keras.layers.Dense(
            embedding_dim,
            use_bias=False,
            kernel_initializer=keras.initializers.RandomNormal(
                stddev=0.05 / hp["model_dim"] ** 0.5
            ),
            name="feedback_to_fm",
        )(feedback_fields)
        stacked = keras.layers.Concatenate(axis=1, name="fm_fields")(
            [keras.layers.Reshape((1, embedding_dim))(e) for e in fields] + [feedback_fields]
        )
        fm_vector = FactorizationMachine(name="fm")(stacked)
        logits.append(keras.layers.Dense(1, kernel_initializer="zeros", name="fm_logit")(fm_vector))
    deep_extra = [f_feed]
    if hp["use_history_statistics"]:
        deep_extra.append(HistoryStatistics(name="history_statistics")(full_masks))
    logits.append(
        MLP(
            hidden_units=list(hidden_units),
            dropout=dropout,
            use_batch_norm=use_batch_norm,
            output_units=1,
            name="deep",
        )(graph.deep_input(deep_extra))
    )
    return WideDeepModel(graph.inputs, logits_to_probability(logits), name=name)
