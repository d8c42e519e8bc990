"""Builder of the Deep Feedback Network (DFN) from a schema and hyper-parameters."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import keras

from widedeep.features import FeatureGraph
from widedeep.layers.feedback_interaction import FeedbackInteraction
from widedeep.layers.fm import FactorizationMachine
from widedeep.layers.history import CandidateHistory, HistoryStatistics
from widedeep.layers.take_most_recent import TakeMostRecent
from widedeep.models.two_optimizer_model import WIDE_BRANCH, WideDeepModel
from widedeep.models.wide_deep import deep_logit, logits_to_probability
from widedeep.schema import FEEDBACK_SEQUENCES, Schema, SchemaError

_MODULE_ARGUMENTS: dict[str, str] = {
    "model_dim": "model_dim",
    "num_heads": "num_heads",
    "ffn_multiplier": "ffn_multiplier",
    "pooling": "pooling",
    "norm_first": "norm_first",
    "transformer_dropout": "dropout",
    "attention_hidden_units": "attention_hidden_units",
    "use_click_transformer": "use_click_transformer",
    "use_unclick_transformer": "use_unclick_transformer",
    "use_dislike_transformer": "use_dislike_transformer",
    "use_click_aware_attention": "use_click_aware_attention",
    "residual_gate": "residual_gate",
}
"""The `build_dfn` keywords that configure `FeedbackInteraction`, each with its argument there."""


def _module_defaults() -> dict[str, Any]:
    """`FeedbackInteraction`'s defaults under their `build_dfn` keywords (tuples as lists)."""
    parameters = inspect.signature(FeedbackInteraction.__init__).parameters
    defaults = {key: parameters[arg].default for key, arg in _MODULE_ARGUMENTS.items()}
    return {key: list(v) if isinstance(v, tuple) else v for key, v in defaults.items()}


DFN_DEFAULTS: dict[str, Any] = {
    **_module_defaults(),
    "sequence_length": 0,
    "use_fm": True,
    "use_wide": True,
    "use_history_statistics": False,
    "use_candidate_history": True,
}
"""DFN-specific hyper-parameters and their defaults (each is a `build_dfn` keyword and a CLI flag).

The feedback module's settings are `FeedbackInteraction`'s own defaults, read from its
signature (`transformer_dropout` is its `dropout`); its docstring gives the reasons for the
model width, the pooling and the pre-norm sub-layers. `sequence_length=0` keeps the schema's
`max_length`; a smaller value keeps only the most recent positions.
`use_candidate_history=True` feeds the deep MLP, per sequence and item feature, the
share of the user's history that matches the candidate (`widedeep.layers.CandidateHistory`):
the exact-match signal that attention over sparsely trained id embeddings does not
recover. `use_history_statistics=True` feeds it the counts of the three sequences
(`widedeep.layers.HistoryStatistics`); they are off by default because they lift AUC
and lower GAUC, ranking users rather than one user's candidates (the ablation ladder
in `docs/results.md` has both).

Choices against the paper (embedding 64, MLP 32-16, Adam, batch 64) and the authors'
code (embedding 16, Adagrad lr 0.01 with initial accumulator 1e-6, batch 256):
embeddings default to 8 wide, the deep MLP to 128-64: our simulated data are far
smaller than WeChat's logs.
"""


def build_dfn(
    schema: Schema,
    *,
    embedding_dim: int = 8,
    hidden_units: Sequence[int] = (128, 64),
    dropout: float = 0.5,
    use_batch_norm: bool = False,
    name: str = "dfn",
    **feedback: Any,
) -> WideDeepModel:
    """Builds a Deep Feedback Network: wide + FM + deep over features and user feedback.

    The feedback module (`widedeep.layers.FeedbackInteraction`) turns the
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
        dropout: dropout after each hidden layer of the deep MLP (Wide & Deep's default).
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
        raise SchemaError(
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
            vectors = TakeMostRecent(length, name=f"{seq_name}_recent")(vectors)
            mask = TakeMostRecent(length, name=f"{seq_name}_recent_mask")(mask)
        module_inputs[seq_name] = vectors
        module_inputs[f"{seq_name}_mask"] = mask
    module = FeedbackInteraction(
        **{argument: hp[key] for key, argument in _MODULE_ARGUMENTS.items()}, name="feedback"
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
    if hp["use_candidate_history"]:
        features = [
            f
            for f in schema.target_item_features
            if all(f in schema.sequence(s).item_features for s in FEEDBACK_SEQUENCES)
        ]
        sequence_values = [
            [graph.inputs[schema.sequence(s).input_name(f)] for f in features]
            for s in FEEDBACK_SEQUENCES
        ]
        candidate = CandidateHistory(
            [schema.feature(f).missing_value for f in features], name="candidate_history"
        )
        deep_extra.append(
            candidate([[graph.inputs[f] for f in features], sequence_values, full_masks])
        )
    logits.append(deep_logit(graph.deep_input(deep_extra), hidden_units, dropout, use_batch_norm))
    return WideDeepModel(graph.inputs, logits_to_probability(logits), name=name)
