"""From a `Schema` to Keras inputs, in-model preprocessing, wide indices and deep embeddings.

`FeatureGraph` builds the symbolic part of a functional model that every model
builder shares: raw `keras.Input`s, the preprocessing layers (vocabulary lookups,
hashing, standardisation, quantile buckets, hashed crosses) and the embedding
tables. Layers are created once and reused, so a sequence of item ids goes through
the same lookup and the same embedding table as the target item id. Everything
lives inside the model: the saved model takes raw feature dicts.
"""

from __future__ import annotations

import keras

from widedeep.layers.embedding import Embedding
from widedeep.layers.preprocessing import HashedCross, Standardize
from widedeep.layers.wide import WideLinear
from widedeep.schema import CategoricalFeature, CrossFeature, NumericFeature, Schema, SchemaError

_KERAS_DTYPES = {"int64": "int64", "string": "string", "float32": "float32"}


class FeatureGraph:
    """Symbolic inputs and feature transformations for one functional model.

    Args:
        schema: the dataset's `Schema`.
        embedding_dim: if given, overrides every feature's `embedding_dim` (models
            that interact embeddings, such as an FM, need one common width).

    Example:

    ```python
    graph = FeatureGraph(schema)
    wide_logit = graph.wide_logit()
    deep_input = graph.deep_input()
    ```
    """

    def __init__(self, schema: Schema, embedding_dim: int | None = None) -> None:
        if embedding_dim is not None and (not isinstance(embedding_dim, int) or embedding_dim < 1):
            raise ValueError(
                f"`embedding_dim` must be an int >= 1. Received: embedding_dim={embedding_dim}"
            )
        self.schema = schema
        self.embedding_dim = embedding_dim
        self.inputs: dict[str, keras.KerasTensor] = {
            name: keras.Input(shape=shape, dtype=_KERAS_DTYPES[dtype], name=name)
            for name, (shape, dtype) in schema.input_signature().items()
        }
        self._lookups: dict[str, keras.layers.Layer] = {}
        self._embeddings: dict[str, Embedding] = {}
        self._index_cache: dict[str, keras.KerasTensor] = {}

    # ------------------------------------------------------------- indices
    def _lookup_layer(self, feature: CategoricalFeature) -> keras.layers.Layer:
        layer = self._lookups.get(feature.name)
        if layer is None:
            name = f"lookup_{feature.name}"
            if feature.hash_buckets is not None:
                layer = keras.layers.Hashing(num_bins=feature.hash_buckets, name=name)
            elif feature.dtype == "string":
                layer = keras.layers.StringLookup(
                    vocabulary=list(feature.vocabulary),
                    num_oov_indices=feature.num_oov_buckets,
                    oov_token="[OOV]",
                    name=name,
                )
            else:
                layer = keras.layers.IntegerLookup(
                    vocabulary=list(feature.vocabulary),
                    num_oov_indices=feature.num_oov_buckets,
                    oov_token=-1,
                    name=name,
                )
            self._lookups[feature.name] = layer
        return layer

    def index(self, name: str) -> keras.KerasTensor:
        """Integer index `[B]` of a categorical, bucketised numeric or cross feature."""
        if name in self._index_cache:
            return self._index_cache[name]
        crosses = {c.name: c for c in self.schema.crosses}
        if name in crosses:
            cross: CrossFeature = crosses[name]
            parts = [self.index(f) for f in cross.features]
            out = HashedCross(
                cross.hash_buckets,
                cardinalities=[self.cardinality(f) for f in cross.features],
                name=f"cross_{cross.name}",
            )(parts)
        else:
            feature = self.schema.feature(name)
            raw = self.inputs[name]
            if isinstance(feature, NumericFeature):
                out = keras.layers.Discretization(
                    bin_boundaries=list(feature.boundaries),
                    output_mode="int",
                    name=f"bucketize_{name}",
                )(raw)
            else:
                out = self._lookup_layer(feature)(raw)
        self._index_cache[name] = out
        return out

    def sequence_index(
        self, sequence: str, item_feature: str
    ) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        """Indices `[B, L]` of one item feature of a sequence, and its validity mask `[B, L]`.

        The item feature's own lookup layer is reused. Padding positions (the
        missing value) are masked; they also map to the OOV bucket, but a masked
        position never reaches any output.
        """
        seq = self.schema.sequence(sequence)
        feature = self.schema.feature(item_feature)
        raw = self.inputs[seq.input_name(item_feature)]
        mask = keras.ops.not_equal(raw, feature.missing_value)
        return self._lookup_layer(feature)(raw), mask

    def cardinality(self, name: str) -> int:
        crosses = {c.name: c for c in self.schema.crosses}
        if name in crosses:
            return crosses[name].cardinality
        return self.schema.feature(name).cardinality

    # ---------------------------------------------------------------- wide
    def wide_logit(self, name: str = "wide") -> keras.KerasTensor:
        """The wide branch's logit `[B, 1]` over every feature marked `wide` in the schema."""
        names = [f.name for f in self.schema.wide_features]
        if not names:
            raise SchemaError(
                "the schema marks no feature as wide; build a deep-only model instead"
            )
        layer = WideLinear([self.cardinality(n) for n in names], name=name)
        return layer([self.index(n) for n in names])

    # ---------------------------------------------------------------- deep
    def _dim(self, declared: int | None) -> int | None:
        if declared is None:
            return None
        return self.embedding_dim or declared

    def embedding_table(self, name: str) -> Embedding:
        """The (shared) embedding table of a categorical or cross feature."""
        table = self._embeddings.get(name)
        if table is None:
            crosses = {c.name: c for c in self.schema.crosses}
            feature = crosses.get(name) or self.schema.feature(name)
            dim = self._dim(feature.embedding_dim)
            if dim is None:
                raise SchemaError(
                    f"feature '{name}' has no embedding_dim: it is not a deep feature"
                )
            table = Embedding(
                self.cardinality(name),
                dim,
                embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05),
                name=f"embedding_{name}",
            )
            self._embeddings[name] = table
        return table

    def embedding(self, name: str) -> keras.KerasTensor:
        """Embedding `[B, dim]` of a categorical or cross feature."""
        return self.embedding_table(name)(self.index(name))

    @property
    def deep_embedding_names(self) -> list[str]:
        """Scalar features with an embedding (categorical, then crosses), in schema order."""
        return [f.name for f in self.schema.categorical if f.embedding_dim] + [
            c.name for c in self.schema.crosses if c.embedding_dim
        ]

    def field_embeddings(self) -> list[keras.KerasTensor]:
        """Embeddings `[B, dim]` of every deep categorical and cross feature."""
        return [self.embedding(n) for n in self.deep_embedding_names]

    def dense_features(self) -> keras.KerasTensor | None:
        """Standardised numeric deep features, `[B, n]`, or None when there are none."""
        columns = []
        for f in self.schema.numeric:
            if not f.deep:
                continue
            raw = self.inputs[f.name]
            if f.normalization == "standard":
                columns.append(Standardize(f.mean, f.std, name=f"standardize_{f.name}")(raw))
            else:
                columns.append(keras.layers.Reshape((1,), name=f"reshape_{f.name}")(raw))
        if not columns:
            return None
        return (
            columns[0]
            if len(columns) == 1
            else keras.layers.Concatenate(name="dense_features")(columns)
        )

    def deep_input(self, extra: list[keras.KerasTensor] | None = None) -> keras.KerasTensor:
        """Concatenation of all field embeddings, dense features and `extra` tensors."""
        parts = self.field_embeddings()
        dense = self.dense_features()
        if dense is not None:
            parts.append(dense)
        parts.extend(extra or [])
        if not parts:
            raise SchemaError("the schema has no deep feature (no embedding_dim, no deep numeric)")
        return parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="deep_input")(parts)

    # ----------------------------------------------------------- sequences
    def item_vector(self) -> keras.KerasTensor:
        """The target item's vector: concatenated embeddings of `target_item_features`, `[B, D]`."""
        fields = self.schema.target_item_features
        if not fields:
            raise SchemaError("the schema has no target_item_features")
        parts = [self.embedding(f) for f in fields]
        return parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="target_item")(parts)

    def sequence_vectors(self, sequence: str) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        """Item vectors `[B, L, D]` of a sequence (shared tables) and its mask `[B, L]`.

        A position is valid when any of its item features is present: padding has
        every feature missing, while an item with one missing feature (a video
        without a tag) stays in the sequence and that feature takes its OOV
        vector, as it does for the target item.
        """
        seq = self.schema.sequence(sequence)
        indexed = [self.sequence_index(sequence, f) for f in seq.item_features]
        mask = indexed[0][1]
        for _, item_mask in indexed[1:]:
            mask = keras.ops.logical_or(mask, item_mask)
        # Only the valid positions are looked up (padding gets zero vectors and no
        # gradient rows): feedback sequences are mostly padding on real logs.
        parts = [
            self.embedding_table(f)(ids, valid=mask)
            for f, (ids, _) in zip(seq.item_features, indexed, strict=True)
        ]
        vectors = (
            parts[0]
            if len(parts) == 1
            else keras.layers.Concatenate(name=f"{sequence}_items")(parts)
        )
        return vectors, mask
