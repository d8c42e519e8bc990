"""Declarative, JSON-serialisable description of a dataset's raw features.

A `Schema` says what the raw inputs are (their names, types and shapes), how each
one is preprocessed *inside* the model (vocabulary lookup, hashing, normalisation,
quantile buckets, hashed crosses) and which branch consumes it (`wide`, `deep` or
both). Statistics such as vocabularies, means and quantile boundaries are part of
the schema: they are computed once from the training split when a dataset is
written, so a model builder needs only the schema and hyper-parameters.

Conventions shared by every part of the project:

* Categorical features are scalars, `int64` or `string`. Values outside the
  vocabulary go to an out-of-vocabulary (OOV) bucket. A value missing from a
  record is read as the *missing value* (`-1` for `int64`, `""` for `string`),
  which a vocabulary feature sends to the OOV bucket and a hashed feature hashes
  like any other value.
* Numeric features are `float32` scalars; a missing value is read as the
  feature's mean (so it normalises to 0).
* A sequence feature `s` with item features `[f1, f2]` has one raw input per item
  feature, named `f"{s}_{f1}"`, of shape `[max_length]`, most recent item first,
  right-padded with the missing value. Padded positions are masked.
* Every record also carries the label (`0`/`1`), the feedback type (see
  `FEEDBACK_TYPES`) and a group key (the user id) used for GAUC.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from widedeep.errors import WidedeepError
from widedeep.safe_output import write_json

FEEDBACK_TYPES: tuple[str, ...] = ("unclick", "click", "dislike")
"""Feedback type codes: the record's feedback column holds the index into this tuple."""

FEEDBACK_SEQUENCES: tuple[str, ...] = ("click", "unclick", "dislike")
"""The feedback sequences DFN reads, in its order (c, u, d): the names of a dataset's
`SequenceFeature`s and of `FeedbackInteraction`'s output blocks; each is a `FEEDBACK_TYPES` entry."""

MISSING_INT = -1
MISSING_STRING = ""

_DTYPES = ("int64", "string")
_NORMALIZATIONS = ("standard", "none")


class SchemaError(WidedeepError, ValueError):
    """A schema that is malformed or inconsistent; the message names the feature at fault."""


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise SchemaError(
            f"{kind} feature name must be a non-empty identifier (letters, digits, '_'). "
            f"Received: name={name!r}"
        )


def _plain(value: Any) -> Any:
    """`dataclasses.asdict` for the schema's values: lists of scalars are copied flat."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (str, int, float, bool)) or v is None for v in value):
            return list(value)
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass
class CategoricalFeature:
    """A scalar categorical feature: a vocabulary lookup or a hash into buckets.

    Args:
        name: raw input name.
        dtype: `"int64"` or `"string"`.
        vocabulary: the known values; exactly one of `vocabulary` and `hash_buckets`.
        hash_buckets: number of hash buckets (for open-ended id spaces).
        num_oov_buckets: OOV buckets in front of a vocabulary (ignored when hashing).
        wide: whether the wide (linear) branch sees this feature as a one-hot.
        embedding_dim: embedding width for the deep branch; `None` keeps it out of deep.
    """

    name: str
    dtype: str = "int64"
    vocabulary: list[Any] | None = None
    hash_buckets: int | None = None
    num_oov_buckets: int = 1
    wide: bool = True
    embedding_dim: int | None = 8

    def validate(self) -> None:
        _check_name("Categorical", self.name)
        where = f"categorical feature '{self.name}'"
        if self.dtype not in _DTYPES:
            raise SchemaError(
                f"{where}: dtype must be one of {_DTYPES}. Received: dtype={self.dtype!r}"
            )
        if (self.vocabulary is None) == (self.hash_buckets is None):
            raise SchemaError(
                f"{where}: give exactly one of `vocabulary` and `hash_buckets`. "
                f"Received: vocabulary={'set' if self.vocabulary is not None else None}, "
                f"hash_buckets={self.hash_buckets}"
            )
        if self.vocabulary is not None:
            if len(self.vocabulary) == 0:
                raise SchemaError(f"{where}: vocabulary is empty")
            kind = str if self.dtype == "string" else int
            bad = [v for v in self.vocabulary if not isinstance(v, kind) or isinstance(v, bool)]
            if bad:
                raise SchemaError(
                    f"{where}: vocabulary values must be {self.dtype}. Received: {bad[:3]!r}"
                )
            if len(set(self.vocabulary)) != len(self.vocabulary):
                raise SchemaError(f"{where}: vocabulary has duplicate values")
            if not isinstance(self.num_oov_buckets, int) or self.num_oov_buckets < 1:
                raise SchemaError(
                    f"{where}: num_oov_buckets must be an int >= 1. Received: num_oov_buckets={self.num_oov_buckets!r}"
                )
        if self.hash_buckets is not None and (
            not isinstance(self.hash_buckets, int) or self.hash_buckets < 1
        ):
            raise SchemaError(
                f"{where}: hash_buckets must be an int >= 1. Received: hash_buckets={self.hash_buckets!r}"
            )
        _check_embedding_dim(where, self.embedding_dim)

    @property
    def cardinality(self) -> int:
        """Number of distinct indices the preprocessing produces (OOV buckets included)."""
        if self.hash_buckets is not None:
            return self.hash_buckets
        return len(self.vocabulary) + self.num_oov_buckets

    @property
    def missing_value(self) -> int | str:
        return MISSING_STRING if self.dtype == "string" else MISSING_INT


@dataclass
class NumericFeature:
    """A scalar float feature.

    Args:
        name: raw input name.
        mean: mean of the training split, for standardisation.
        std: standard deviation of the training split, for standardisation.
        normalization: `"standard"` ((x - mean) / std) or `"none"`.
        boundaries: sorted quantile bucket boundaries, required for `wide` and for crosses.
        wide: whether the wide branch sees the bucketised value as a one-hot.
        deep: whether the deep branch sees the normalised value.
    """

    name: str
    mean: float = 0.0
    std: float = 1.0
    normalization: str = "standard"
    boundaries: list[float] | None = None
    wide: bool = False
    deep: bool = True

    def validate(self) -> None:
        _check_name("Numeric", self.name)
        where = f"numeric feature '{self.name}'"
        if self.normalization not in _NORMALIZATIONS:
            raise SchemaError(
                f"{where}: normalization must be one of {_NORMALIZATIONS}. Received: normalization={self.normalization!r}"
            )
        if not isinstance(self.std, (int, float)) or not self.std > 0:
            raise SchemaError(f"{where}: std must be > 0. Received: std={self.std!r}")
        if self.boundaries is not None:
            b = list(self.boundaries)
            if not b or any(not isinstance(x, (int, float)) for x in b) or b != sorted(set(b)):
                raise SchemaError(
                    f"{where}: boundaries must be non-empty, numeric and strictly increasing"
                )
        if self.wide and self.boundaries is None:
            raise SchemaError(f"{where}: wide=True needs quantile `boundaries` to bucketise on")
        if not (self.wide or self.deep):
            raise SchemaError(f"{where}: used by neither branch (wide=False, deep=False)")

    @property
    def cardinality(self) -> int:
        """Number of buckets (len(boundaries) + 1)."""
        if self.boundaries is None:
            raise SchemaError(f"numeric feature '{self.name}' has no boundaries to bucketise on")
        return len(self.boundaries) + 1


@dataclass
class CrossFeature:
    """A cross product of two or more categorical or bucketised numeric features.

    When the product of the crossed features' cardinalities fits in `hash_buckets`,
    every combination gets its own bucket; otherwise combinations are hashed into
    the buckets (see `widedeep.layers.HashedCross`).

    Args:
        name: name of the crossed feature (not a raw input).
        features: the crossed features' names.
        hash_buckets: size of the cross space.
        wide: whether the wide branch sees it (the usual place for crosses).
        embedding_dim: embedding width for the deep branch; `None` keeps it out of deep.
    """

    name: str
    features: list[str] = field(default_factory=list)
    hash_buckets: int = 1000
    wide: bool = True
    embedding_dim: int | None = None

    def validate(self) -> None:
        _check_name("Cross", self.name)
        where = f"cross feature '{self.name}'"
        if len(self.features) < 2:
            raise SchemaError(
                f"{where}: needs at least two features. Received: features={self.features!r}"
            )
        if not isinstance(self.hash_buckets, int) or self.hash_buckets < 1:
            raise SchemaError(
                f"{where}: hash_buckets must be an int >= 1. Received: hash_buckets={self.hash_buckets!r}"
            )
        _check_embedding_dim(where, self.embedding_dim)
        if not (self.wide or self.embedding_dim):
            raise SchemaError(f"{where}: used by neither branch")

    @property
    def cardinality(self) -> int:
        return self.hash_buckets


@dataclass
class SequenceFeature:
    """A variable-length, most-recent-first sequence of items (e.g. a user's recent clicks).

    Each item is described by categorical features of the schema (`item_features`),
    whose vocabularies and embedding tables it shares. The raw inputs are named
    `f"{name}_{item_feature}"`, each of shape `[max_length]`, padded with the
    missing value.

    Args:
        name: the sequence's name, e.g. `"click"`.
        item_features: names of categorical features describing an item.
        max_length: number of positions kept (the most recent ones).
    """

    name: str
    item_features: list[str] = field(default_factory=list)
    max_length: int = 30

    def validate(self) -> None:
        _check_name("Sequence", self.name)
        where = f"sequence feature '{self.name}'"
        if not self.item_features:
            raise SchemaError(f"{where}: item_features is empty")
        if not isinstance(self.max_length, int) or self.max_length < 1:
            raise SchemaError(
                f"{where}: max_length must be an int >= 1. Received: max_length={self.max_length!r}"
            )

    def input_name(self, item_feature: str) -> str:
        """Raw input name of this sequence's `item_feature` column."""
        return f"{self.name}_{item_feature}"

    @property
    def input_names(self) -> list[str]:
        return [self.input_name(f) for f in self.item_features]


def _check_embedding_dim(where: str, dim: Any) -> None:
    if dim is not None and (not isinstance(dim, int) or dim < 1):
        raise SchemaError(
            f"{where}: embedding_dim must be None or an int >= 1. Received: embedding_dim={dim!r}"
        )


@dataclass
class Schema:
    """The full description of a dataset's raw features and targets.

    Args:
        categorical: the categorical features.
        numeric: the numeric features.
        crosses: the crosses of categorical and bucketised numeric features.
        sequences: the feedback sequences.
        label: name of the 0/1 click label column.
        feedback: name of the feedback-type column (codes index `FEEDBACK_TYPES`).
        group_key: name of the `int64` column grouping impressions per user, for GAUC.
        target_item_features: categorical features describing the target item, in the
            same order as every sequence's `item_features` (DFN compares the two).

    Example:

    ```python
    schema = Schema(
        categorical=[CategoricalFeature("user_region", vocabulary=[0, 1, 2])],
        numeric=[NumericFeature("price", mean=3.0, std=2.0, boundaries=[1.0, 5.0], wide=True)],
        crosses=[CrossFeature("region_x_price", ["user_region", "price"], hash_buckets=64)],
    )
    schema.save("schema.json")
    ```
    """

    categorical: list[CategoricalFeature] = field(default_factory=list)
    numeric: list[NumericFeature] = field(default_factory=list)
    crosses: list[CrossFeature] = field(default_factory=list)
    sequences: list[SequenceFeature] = field(default_factory=list)
    label: str = "label"
    feedback: str = "feedback"
    group_key: str = "user_id"
    target_item_features: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ lookup
    @property
    def features(self) -> dict[str, CategoricalFeature | NumericFeature]:
        """Scalar raw features by name (categorical and numeric)."""
        return {f.name: f for f in [*self.categorical, *self.numeric]}

    def feature(self, name: str) -> CategoricalFeature | NumericFeature:
        try:
            return self.features[name]
        except KeyError:
            raise SchemaError(
                f"unknown feature '{name}'; the schema has {sorted(self.features)}"
            ) from None

    def sequence(self, name: str) -> SequenceFeature:
        for s in self.sequences:
            if s.name == name:
                return s
        raise SchemaError(
            f"unknown sequence '{name}'; the schema has {[s.name for s in self.sequences]}"
        )

    @property
    def wide_features(self) -> list[CategoricalFeature | NumericFeature | CrossFeature]:
        return [f for f in [*self.categorical, *self.numeric, *self.crosses] if f.wide]

    def input_signature(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Raw model inputs: `{name: (shape_without_batch, dtype)}`, dtype in int64/string/float32."""
        sig: dict[str, tuple[tuple[int, ...], str]] = {}
        for f in self.categorical:
            sig[f.name] = ((), f.dtype)
        for f in self.numeric:
            sig[f.name] = ((), "float32")
        for s in self.sequences:
            for item in s.item_features:
                sig[s.input_name(item)] = ((s.max_length,), self.feature(item).dtype)
        return sig

    # -------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise `SchemaError` naming the feature at fault if the schema is inconsistent."""
        for group, kind in (
            (self.categorical, CategoricalFeature),
            (self.numeric, NumericFeature),
            (self.crosses, CrossFeature),
            (self.sequences, SequenceFeature),
        ):
            for f in group:
                if not isinstance(f, kind):
                    raise SchemaError(
                        f"expected {kind.__name__}, received {type(f).__name__}: {f!r}"
                    )
                f.validate()
        names = [f.name for f in [*self.categorical, *self.numeric, *self.crosses]]
        names += [n for s in self.sequences for n in s.input_names]
        names += [self.label, self.feedback]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"duplicate names in schema: {dupes}")
        scalars = self.features
        for c in self.crosses:
            for name in c.features:
                f = scalars.get(name)
                if f is None:
                    raise SchemaError(f"cross feature '{c.name}': unknown feature '{name}'")
                if isinstance(f, NumericFeature) and f.boundaries is None:
                    raise SchemaError(
                        f"cross feature '{c.name}': numeric feature '{name}' needs boundaries to be crossed"
                    )
        categorical = {f.name: f for f in self.categorical}
        for s in self.sequences:
            for item in s.item_features:
                f = categorical.get(item)
                if f is None:
                    raise SchemaError(
                        f"sequence feature '{s.name}': unknown categorical item feature '{item}'"
                    )
                if f.embedding_dim is None:
                    raise SchemaError(
                        f"sequence feature '{s.name}': item feature '{item}' needs an embedding_dim"
                    )
            if self.target_item_features and s.item_features != self.target_item_features:
                raise SchemaError(
                    f"sequence feature '{s.name}': item_features {s.item_features} differ from "
                    f"target_item_features {self.target_item_features}"
                )
        for item in self.target_item_features:
            if item not in categorical:
                raise SchemaError(f"target_item_features: unknown categorical feature '{item}'")
        if not any(f.wide for f in [*self.categorical, *self.numeric, *self.crosses]) and not any(
            getattr(f, "embedding_dim", None) or getattr(f, "deep", False)
            for f in [*self.categorical, *self.numeric, *self.crosses]
        ):
            raise SchemaError("schema has no feature for either branch")

    # ----------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """The schema as plain JSON values (`dataclasses.asdict`, without deep-copying vocabularies)."""
        return _plain(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Schema:
        """Build a schema from `to_dict()` output; raises `SchemaError` on malformed input."""
        if not isinstance(config, dict):
            raise SchemaError(f"schema must be a JSON object. Received: {type(config).__name__}")
        kinds = {
            "categorical": CategoricalFeature,
            "numeric": NumericFeature,
            "crosses": CrossFeature,
            "sequences": SequenceFeature,
        }
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise SchemaError(f"unknown schema keys: {unknown}")
        kwargs: dict[str, Any] = {}
        for key, value in config.items():
            if key in kinds:
                if not isinstance(value, list):
                    raise SchemaError(f"'{key}' must be a list")
                kind = kinds[key]
                allowed = {f.name for f in dataclasses.fields(kind)}
                items = []
                for i, item in enumerate(value):
                    if not isinstance(item, dict) or "name" not in item:
                        raise SchemaError(f"'{key}'[{i}] must be an object with a 'name'")
                    extra = sorted(set(item) - allowed)
                    if extra:
                        raise SchemaError(f"{kind.__name__} '{item['name']}': unknown keys {extra}")
                    items.append(kind(**item))
                kwargs[key] = items
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Schema:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            raise SchemaError(f"schema is not valid JSON: {e}") from None
        return cls.from_dict(config)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the schema as JSON to `path`, atomically (`widedeep.safe_output.write_json`)."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Schema:
        """Read a schema file; errors name the file."""
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise SchemaError(f"cannot read schema {path}: {e.strerror}") from None
        try:
            return cls.from_json(text)
        except SchemaError as e:
            raise SchemaError(f"{path}: {e}") from None
