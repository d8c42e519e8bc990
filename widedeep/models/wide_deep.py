"""Builders of Wide & Deep and its baselines from a schema and hyper-parameters."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from widedeep.features import FeatureGraph
from widedeep.layers.calibration import LogitOffset
from widedeep.layers.mlp import MLP
from widedeep.layers.pooling import MaskedMeanPooling
from widedeep.models.two_optimizer_model import WIDE_BRANCH, WideDeepModel
from widedeep.schema import Schema, SchemaError

BRANCHES = ("wide_deep", "wide", "deep")

CALIBRATION = "calibration"
"""Name of the `LogitOffset` layer before the sigmoid of every model."""


def logits_to_probability(logits: list[keras.KerasTensor]) -> keras.KerasTensor:
    """Sums branch logits `[B, 1]` and applies the sigmoid, returning `[B, 1]` probabilities.

    The output keeps its trailing axis: Keras losses reduce the last axis, so a
    `[B]` output would collapse the batch before sample weights and the
    distribution-strategy scaling are applied. The sigmoid is the last op, so
    Keras' binary cross-entropy works on the logits. A `LogitOffset` named
    `calibration` (0 until `widedeep.training.train` calibrates a model trained with
    unequal loss weights) sits between the sum and the sigmoid.
    """
    logit = logits[0] if len(logits) == 1 else keras.layers.Add(name="logit")(logits)
    logit = LogitOffset(name=CALIBRATION)(logit)
    return keras.layers.Activation("sigmoid", name="probability")(logit)


def deep_logit(
    deep_input: keras.KerasTensor,
    hidden_units: Sequence[int],
    dropout: float,
    use_batch_norm: bool,
) -> keras.KerasTensor:
    """The deep branch: an `MLP` named `deep` from the deep input to a logit `[B, 1]`.

    Args:
        deep_input: `FeatureGraph.deep_input(...)`, `[B, D]`.
        hidden_units: widths of the MLP's hidden layers.
        dropout: dropout after each hidden layer.
        use_batch_norm: batch normalisation in the MLP.

    Returns:
        The branch's logit, `[B, 1]`.
    """
    return MLP(
        hidden_units=list(hidden_units),
        dropout=dropout,
        use_batch_norm=use_batch_norm,
        output_units=1,
        name="deep",
    )(deep_input)


def build_wide_deep(
    schema: Schema,
    *,
    branches: str = "wide_deep",
    hidden_units: Sequence[int] = (128, 64),
    dropout: float = 0.5,
    use_batch_norm: bool = False,
    embedding_dim: int | None = None,
    sequence_pooling: bool = False,
    name: str | None = None,
) -> WideDeepModel:
    """Builds a Wide & Deep model (or its wide-only / deep-only baseline) from a schema.

    Args:
        schema: the dataset's `Schema` (features, vocabularies, statistics).
        branches: `"wide_deep"`, `"wide"` (the linear baseline) or `"deep"` (the
            MLP-over-embeddings baseline).
        hidden_units: widths of the deep MLP.
        dropout: dropout after each hidden layer. The default 0.5 keeps the deep part's
            id embeddings from overfitting a log with few impressions per id (measured in
            `docs/results.md`).
        use_batch_norm: batch normalisation in the MLP.
        embedding_dim: overrides every feature's embedding width when given.
        sequence_pooling: feeds the masked mean of each feedback sequence's item
            embeddings to the deep branch (BST's "WDL(+Seq)" baseline).
        name: model name; defaults to `branches` (with `_seq` when pooling).

    Returns:
        An uncompiled `WideDeepModel` taking a dict of raw features and returning
        the click probability `[B, 1]`.

    Example:

    ```python
    model = build_wide_deep(schema, hidden_units=(256, 128, 64))
    model.compile(metrics=[keras.metrics.AUC(name="auc")])
    ```
    """
    if branches not in BRANCHES:
        raise ValueError(f"`branches` must be one of {BRANCHES}. Received: branches={branches!r}")
    if sequence_pooling and branches == "wide":
        raise ValueError(
            "sequence_pooling feeds the deep branch; it needs branches='wide_deep' or 'deep'"
        )
    if sequence_pooling and not schema.sequences:
        raise SchemaError("sequence_pooling=True but the schema has no sequence features")
    graph = FeatureGraph(schema, embedding_dim=embedding_dim)
    logits = []
    if branches in ("wide_deep", "wide"):
        logits.append(graph.wide_logit(name=WIDE_BRANCH))
    if branches in ("wide_deep", "deep"):
        extra = []
        if sequence_pooling:
            for seq in schema.sequences:
                vectors, mask = graph.sequence_vectors(seq.name)
                extra.append(MaskedMeanPooling(name=f"{seq.name}_mean")(vectors, mask=mask))
        logits.append(deep_logit(graph.deep_input(extra), hidden_units, dropout, use_batch_norm))
    default_name = branches + ("_seq" if sequence_pooling else "")
    return WideDeepModel(graph.inputs, logits_to_probability(logits), name=name or default_name)
