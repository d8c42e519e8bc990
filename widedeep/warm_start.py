"""Warm start: a new day's model from an earlier model's weights and optimizer state.

Every day's dataset has its own vocabularies, so the same user or item sits at
another row of the embedding and wide tables. `warm_start` copies an old model into
a freshly built one key by key. A table row's *key* is what the row stands for:

* a vocabulary value (or one of the OOV buckets) of a `StringLookup` / `IntegerLookup`;
* a hash bucket of a `Hashing` layer (same number of buckets: same key);
* a bucket of a bucketised numeric feature, as its interval `[lo, hi)`: a bucket
  whose boundaries are unchanged keeps its row, even if other boundaries moved;
* for an exact cross (`HashedCross` with one bucket per combination), the tuple of
  its features' keys; for a hashed cross, its bucket, but only when the crossed
  features' key spaces are unchanged (otherwise a bucket holds other combinations).

A row of the new model whose key the old model has keeps the old row, and so do
that row's optimizer slots (the FTRL and Adagrad accumulators, FTRL's linear
term); a row with a new key keeps the new model's initial value and slots (zero
for the wide table, a fresh random vector for an embedding). Every other weight
(the deep MLP, the feedback module, the FM, the calibration offset) is copied as is.
The optimizers' iteration counts are not: the new run counts its own steps from zero
(as `tf.estimator.WarmStartSettings` leaves the global step alone), so that
`widedeep train` resumes and ends its epochs by them. The learning rates are the new
run's settings, not the old run's.

Both models must come from the same builder with the same hyper-parameters; only
the vocabularies, hash-bucket counts and bucket boundaries may differ.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Hashable
from typing import Any

import keras
import numpy as np

from widedeep import _compat
from widedeep.errors import WidedeepError
from widedeep.layers.embedding import Embedding
from widedeep.layers.preprocessing import HashedCross
from widedeep.layers.wide import WideLinear
from widedeep.models import load_model
from widedeep.models.two_optimizer_model import WIDE_BRANCH, WideDeepModel
from widedeep.schema import Schema

__all__ = ["WarmStartError", "row_keys", "warm_start"]


class WarmStartError(WidedeepError, ValueError):
    """The old model cannot warm-start the new one; the message names the layer or weight."""


def _normalise(term: Any) -> Hashable:
    if isinstance(term, bytes):
        return term.decode()
    if isinstance(term, np.generic):
        return term.item()
    return term


def _feature_keys(model: keras.Model, name: str) -> list[Hashable]:
    """The key of each index of a categorical or bucketised numeric feature `name`."""
    layers = {layer.name: layer for layer in model.layers}
    lookup = layers.get(f"lookup_{name}")
    if isinstance(lookup, keras.layers.Hashing):
        return [("bucket", b) for b in range(lookup.num_bins)]
    if isinstance(lookup, (keras.layers.StringLookup, keras.layers.IntegerLookup)):
        oov = lookup.num_oov_indices
        terms = lookup.get_vocabulary(include_special_tokens=True)
        return [("oov", i) if i < oov else ("value", _normalise(t)) for i, t in enumerate(terms)]
    bucketize = layers.get(f"bucketize_{name}")
    if isinstance(bucketize, keras.layers.Discretization):
        edges = [-math.inf, *map(float, bucketize.bin_boundaries), math.inf]
        return [("interval", lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
    raise WarmStartError(f"warm start: model '{model.name}' has no feature '{name}'")


def row_keys(model: keras.Model, schema: Schema, name: str) -> list[Hashable | None]:
    """The key of each row of feature (or cross) `name`'s table in `model`.

    Args:
        model: a model built by this package.
        schema: the schema whose crosses say which features a cross combines.
        name: a categorical, bucketised numeric or cross feature.

    Returns:
        One key per index (`None` for indices no input can produce: the unused
        buckets of an exact cross).

    Example:

    ```python
    row_keys(model, schema, "user_id")[:3]  # [("oov", 0), ("value", 17), ("value", 4)]
    ```
    """
    crosses = {c.name: c for c in schema.crosses}
    if name not in crosses:
        return list(_feature_keys(model, name))
    layer = model.get_layer(f"cross_{name}")
    if not isinstance(layer, HashedCross):
        raise WarmStartError(f"warm start: layer 'cross_{name}' is not a HashedCross")
    parts = [row_keys(model, schema, f) for f in crosses[name].features]
    if [len(p) for p in parts] != list(layer.cardinalities or []):
        raise WarmStartError(
            f"warm start: cross '{name}' of model '{model.name}' crosses features of "
            f"{layer.cardinalities} values, its features have {[len(p) for p in parts]}"
        )
    if layer.exact:
        combinations: list[Hashable | None] = [tuple(c) for c in _product(parts)]
        return combinations + [None] * (layer.num_bins - len(combinations))
    # A hashed bucket stands for the same combinations only over the same key spaces.
    spaces = hashlib.sha256(repr(parts).encode()).hexdigest()
    return [("bucket", b, spaces) for b in range(layer.num_bins)]


def _product(parts: list[list[Hashable]]) -> list[list[Hashable]]:
    """All combinations in mixed-radix order (the last feature varies fastest)."""
    combinations: list[list[Hashable]] = [[]]
    for part in parts:
        combinations = [c + [k] for c in combinations for k in part]
    return combinations


def _tables(model: keras.Model, schema: Schema) -> dict[int, tuple[str, list]]:
    """`{id(table variable): (description, row keys)}` of every embedding and the wide table."""
    tables: dict[int, tuple[str, list]] = {}
    for layer in model.layers:
        if isinstance(layer, Embedding) and layer.name.startswith("embedding_"):
            name = layer.name[len("embedding_") :]
            tables[id(layer.embeddings)] = (f"embedding '{name}'", row_keys(model, schema, name))
        elif isinstance(layer, WideLinear) and layer.name == WIDE_BRANCH:
            names = [f.name for f in schema.wide_features]
            per_feature = [row_keys(model, schema, n) for n in names]
            if [len(k) for k in per_feature] != layer.cardinalities:
                raise WarmStartError(
                    f"warm start: the wide table of model '{model.name}' has segments of "
                    f"{layer.cardinalities} rows, the schema's wide features {names} have "
                    f"{[len(k) for k in per_feature]}: the model was built from another schema"
                )
            keys = [(n, k) for n, ks in zip(names, per_feature) for k in ks]
            tables[id(layer.table.embeddings)] = ("the wide table", keys)
    for variable_id, (what, keys) in tables.items():
        rows = next(v for v in model.weights if id(v) == variable_id).shape[0]
        if len(keys) != rows:
            raise WarmStartError(
                f"warm start: {what} of model '{model.name}' has {rows} rows, {len(keys)} keys"
            )
    return tables


def _row_pairs(old_keys: list, new_keys: list) -> tuple[np.ndarray, np.ndarray]:
    """`(new_rows, old_rows)`: the rows of the new table whose key the old table has."""
    old_index = {k: i for i, k in enumerate(old_keys) if k is not None}
    pairs = [(i, old_index[k]) for i, k in enumerate(new_keys) if k is not None and k in old_index]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    new_rows, old_rows = np.array(pairs, dtype=np.int64).T
    return new_rows, old_rows


def _copy_rows(old: Any, new: Any, new_rows: np.ndarray, old_rows: np.ndarray) -> None:
    value = keras.ops.convert_to_numpy(new).copy()
    value[new_rows] = keras.ops.convert_to_numpy(old)[old_rows]
    new.assign(value)


def _copy(old: Any, new: Any, where: str) -> None:
    if tuple(old.shape) != tuple(new.shape):
        raise WarmStartError(
            f"warm start: {where} '{old.path}' has shape {tuple(old.shape)} in the old model and "
            f"{tuple(new.shape)} in the new one: the models differ in architecture or "
            "hyper-parameters (--model, --hidden-units, --embedding-dim, DFN settings)"
        )
    new.assign(old)


def _warm_optimizer(
    old: keras.optimizers.Optimizer,
    new: keras.optimizers.Optimizer,
    pairs: dict[int, tuple[np.ndarray, np.ndarray]],
    branch: str,
) -> None:
    old_variables, new_variables = list(old.variables), list(new.variables)
    if type(old) is not type(new) or len(old_variables) != len(new_variables):
        raise WarmStartError(
            f"warm start: the old model's {branch} optimizer ({type(old).__name__}, "
            f"{len(old_variables)} variables) does not match the new one's "
            f"({type(new).__name__}, {len(new_variables)} variables)"
        )
    owners = _compat.slot_owners(new)
    for old_v, new_v in zip(old_variables, new_variables):
        if new_v.name == "learning_rate" or new_v is new.iterations:
            continue  # a setting of the new run; the new run's own step count
        owner = owners.get(id(new_v))
        if owner is not None and id(owner) in pairs:
            _copy_rows(old_v, new_v, *pairs[id(owner)])
        else:
            _copy(old_v, new_v, f"{branch} optimizer variable")


def warm_start(
    model: WideDeepModel, old_model: WideDeepModel | str | os.PathLike, schema: Schema
) -> dict[str, dict[str, int]]:
    """Copies an old model's weights and optimizer state into `model`, key by key.

    Args:
        model: the new model, built from `schema` and compiled (its optimizers are built).
        old_model: the old model, or the path of its `.keras` file (saved by `train`,
            with both optimizers' state).
        schema: the new dataset's schema (the feature names and crosses are read from
            it; the old model's vocabularies are read from its lookup layers).

    Returns:
        `{table: {"rows": n, "kept": k}}`: for each embedding and the wide table, its
        rows in the new model and how many kept an old row.

    Raises:
        WarmStartError: if the models differ in anything but vocabularies, hash
            buckets and bucket boundaries; the message names the weight or feature.

    Example:

    ```python
    model = compile_model(build_model(new_schema, "wide_deep"))
    warm_start(model, "runs/monday/model.keras", new_schema)
    model.fit(tuesday_ds)
    ```
    """
    if not isinstance(old_model, keras.Model):
        path = os.fspath(old_model)
        if not os.path.isfile(path):
            raise WarmStartError(f"warm start: no such model file: {path}")
        old_model = load_model(path)
    if not isinstance(old_model, WideDeepModel) or not isinstance(model, WideDeepModel):
        raise WarmStartError("warm start: both models must be WideDeepModels")
    if getattr(old_model, "wide_optimizer", None) is None:
        raise WarmStartError(
            "warm start: the old model has no optimizer state (it was saved uncompiled)"
        )
    model.build_optimizers()
    old_model.build_optimizers()
    old_tables, new_tables = _tables(old_model, schema), _tables(model, schema)
    old_weights, new_weights = list(old_model.weights), list(model.weights)
    if len(old_weights) != len(new_weights):
        raise WarmStartError(
            f"warm start: the old model has {len(old_weights)} weights, the new one "
            f"{len(new_weights)}: the models differ in architecture or hyper-parameters"
        )
    pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    summary: dict[str, dict[str, int]] = {}
    for old_v, new_v in zip(old_weights, new_weights):
        if id(new_v) in new_tables:
            what, new_keys = new_tables[id(new_v)]
            if id(old_v) not in old_tables or tuple(old_v.shape[1:]) != tuple(new_v.shape[1:]):
                raise WarmStartError(
                    f"warm start: {what} has no counterpart of width {new_v.shape[1]} in the old model"
                )
            pairs[id(new_v)] = _row_pairs(old_tables[id(old_v)][1], new_keys)
            _copy_rows(old_v, new_v, *pairs[id(new_v)])
            summary[what] = {"rows": int(new_v.shape[0]), "kept": len(pairs[id(new_v)][0])}
        else:
            _copy(old_v, new_v, "weight")
    _warm_optimizer(old_model.wide_optimizer, model.wide_optimizer, pairs, "wide")
    _warm_optimizer(old_model.deep_optimizer, model.deep_optimizer, pairs, "deep")
    return summary
