"""Honest baselines for a dataset directory: what a model must beat to mean anything.

`run_baselines` reads a dataset directory exactly as `widedeep train` does -- the
train split's fit rows fit, its validation rows validate
(`widedeep.data.carve.validation_carve`: the last `validation_fraction` of the
training period, or of each user's training rows for a per-user split) -- and
scores the test split with four baselines:

* `constant`: the fit rows' click rate for every row. Its log loss is the floor
  every model must beat; its AUC and GAUC are 0.5 by construction.
* `popularity`: the item's smoothed click rate on the fit rows,
  `(clicks_i + a * ctr) / (impressions_i + a)`, `ctr` for items never seen; the
  prior strength `a` is picked from `PRIOR_STRENGTHS` by validation log loss. The
  item is `schema.target_item_features[0]`.
* `logistic_regression`: scikit-learn `LogisticRegression` (lbfgs, L2, gradient
  tolerance `TOL`, one thread) on a sparse one-hot
  (`OneHotEncoder(handle_unknown="ignore")`, fitted on the fit rows) of the
  schema's categorical features, plus the numeric features that carry quantile
  `boundaries`, bucketised exactly as the models' wide branch does
  (`keras.layers.Discretization`: bucket `k` holds `boundaries[k-1] <= x <
  boundaries[k]`). Numeric features without boundaries are left out, and so are
  the schema's crosses: it stays a one-hot LR of the raw features. The inverse
  regularisation `C` is picked from `C_GRID` by validation log loss.
* `lr_history`: the same plus dense history statistics read from the feedback
  sequences each row already holds (`history_statistics`), standardised with the
  fit rows' mean and standard deviation. Skipped, with a note, when the schema
  has no sequences.

Every baseline is fitted on the fit rows only; nothing is refitted on the
validation rows, so the test numbers are directly comparable with a model that
`widedeep train` fitted on the same rows.

```python
from widedeep.baselines import run_baselines
result = run_baselines("data/kr")
result["baselines"]["popularity"]["test"]["auc"]
```
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

from widedeep.data.carve import take_rows, validation_carve
from widedeep.data.reader import load_dataset_dir, read_columns
from widedeep.metrics import ctr_metrics
from widedeep.schema import FEEDBACK_TYPES, NumericFeature, Schema

__all__ = [
    "BASELINES",
    "C_GRID",
    "MAX_ITER",
    "PRIOR_STRENGTHS",
    "TOL",
    "history_statistics",
    "popularity_scores",
    "run_baselines",
]

BASELINES: tuple[str, ...] = ("constant", "popularity", "logistic_regression", "lr_history")
"""Names of the baselines, in the order `run_baselines` reports them."""

PRIOR_STRENGTHS: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0)
"""Grid of the popularity baseline's prior strength `a` (pseudo-impressions at the fit CTR)."""

C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Grid of the logistic regressions' inverse L2 regularisation strength `C`."""

MAX_ITER = 5000
"""lbfgs iteration cap of the logistic regressions (a fit that reaches it is reported)."""

TOL = 1e-6
"""lbfgs gradient tolerance of the logistic regressions.

scikit-learn's lbfgs stops when every component of the gradient of the *mean* loss
(plus penalty) is below `tol`; its default `1e-4` stops far too early here: a
user or item id seen once pulls its weight with a gradient of at most `1 / rows`
(1.5e-5 on KuaiRand's 66k fit rows), and warm-started from the previous `C` a fit
may not move at all. At `1e-6`, KuaiRand's validation log loss agrees to 6
decimals with a fit at `1e-4 / rows` (run to lbfgs' machine-precision stop).
"""


# ----------------------------------------------------------------------------- helpers


def popularity_scores(
    fit_items: np.ndarray,
    fit_labels: np.ndarray,
    items: np.ndarray,
    *,
    prior: float,
    prior_strength: float,
) -> np.ndarray:
    """Smoothed per-item click rates learned from `(fit_items, fit_labels)`, looked up for `items`.

    An item seen `n_i` times with `c_i` clicks scores `(c_i + a * prior) / (n_i + a)`;
    an item absent from `fit_items` scores `prior`.

    Args:
        fit_items: item ids of the fitting impressions (integers or bytes/strings).
        fit_labels: their 0/1 click labels.
        items: the item ids to score.
        prior: the click rate items are shrunk towards (the fit rows' CTR).
        prior_strength: `a`, the prior's weight in pseudo-impressions (> 0).

    Returns:
        `float64 [len(items)]` click probabilities.

    Example:

    ```python
    popularity_scores(np.array([7, 7, 8]), np.array([1, 0, 1]), np.array([7, 9]),
                      prior=0.5, prior_strength=2.0)
    # array([0.5, 0.5]): item 7 is (1 + 1) / (2 + 2), item 9 is unseen
    ```
    """
    if not prior_strength > 0:
        raise ValueError(f"prior_strength must be > 0. Received: prior_strength={prior_strength!r}")
    fit_items = np.asarray(fit_items).reshape(-1)
    fit_labels = np.asarray(fit_labels, dtype=np.float64).reshape(-1)
    items = np.asarray(items).reshape(-1)
    keys, inverse = np.unique(fit_items, return_inverse=True)
    clicks = np.bincount(inverse, weights=fit_labels, minlength=len(keys))
    impressions = np.bincount(inverse, minlength=len(keys)).astype(np.float64)
    table = (clicks + prior_strength * prior) / (impressions + prior_strength)
    scores = np.full(len(items), float(prior))
    if len(keys):
        at = np.minimum(np.searchsorted(keys, items), len(keys) - 1)
        seen = keys[at] == items
        scores[seen] = table[at[seen]]
    return scores


def _sequence_lengths(values: np.ndarray, missing: Any) -> np.ndarray:
    """Items per row of a padded `[rows, L]` sequence column (padding = `missing`)."""
    if isinstance(missing, str):
        padding = (values == missing) | (values == missing.encode())
    else:
        padding = values == missing
    return (~padding).sum(axis=1).astype(np.float64)


def history_statistics(
    columns: Mapping[str, np.ndarray], schema: Schema, prior: float
) -> dict[str, np.ndarray]:
    """Dense per-row statistics of the user's history, read from the row's own sequences.

    Each sequence column holds the user's last `max_length` items of one feedback
    type strictly before the impression (padding = the item feature's missing
    value), so these statistics use no future information. With `n_s` the number
    of items in sequence `s` (at most its `max_length`: a *windowed* count):

    * `history_ctr = (n_click + prior) / (n_click + n_unclick + n_dislike + 1)`, the
      user's windowed click rate smoothed with one pseudo-impression at `prior`
      (only when the schema has a sequence named `"click"`; the denominator sums
      the sequences named in `FEEDBACK_TYPES` that the schema has);
    * `log1p_{s}_length = log1p(n_s)` for every sequence `s` of the schema.

    The values are raw (not standardised).

    Within one user these prefix counts are mechanically anti-correlated with the
    label: a click raises the click count of the user's *later* rows, never its
    own, so in a (click, non-click) pair of one user where the click came first
    the click always has the lower count, and in the other order at best a tie
    (on KuaiRand's test split `history_ctr` alone has a fair AUC but a GAUC far below 0.5).
    They separate users, not one user's impressions: expect a better AUC and a
    worse GAUC from them.

    Args:
        columns: `{name: array}` as `read_columns` returns them; must hold, for
            every sequence `s`, the column `s.input_name(s.item_features[0])`.
        schema: the dataset's schema.
        prior: the click rate of the smoothing pseudo-impression (the fit CTR).

    Returns:
        `{statistic name: float64 [rows]}`, `history_ctr` first, then the lengths
        in the schema's sequence order.

    Raises:
        ValueError: if the schema has no sequences, or a needed column is absent.

    Example:

    ```python
    stats = history_statistics(read_columns(d, "test", ["click_video_id", ...]), schema, 0.44)
    stats["history_ctr"][:3]
    ```
    """
    if not schema.sequences:
        raise ValueError("history_statistics: the schema has no sequence features")
    lengths: dict[str, np.ndarray] = {}
    for s in schema.sequences:
        name = s.input_name(s.item_features[0])
        if name not in columns:
            raise ValueError(
                f"history_statistics: no column '{name}' (sequence '{s.name}'); "
                f"received {sorted(columns)}"
            )
        missing = schema.feature(s.item_features[0]).missing_value
        lengths[s.name] = _sequence_lengths(np.asarray(columns[name]), missing)
    out: dict[str, np.ndarray] = {}
    if "click" in lengths:
        total = sum(lengths[t] for t in FEEDBACK_TYPES if t in lengths)
        out["history_ctr"] = (lengths["click"] + prior) / (total + 1.0)
    for name, n in lengths.items():
        out[f"log1p_{name}_length"] = np.log1p(n)
    return out


def _resolve_features(
    schema: Schema, features: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """`(features used by the LRs, numeric features left out)`; raises ValueError on bad names."""
    scalars = schema.features
    if features is None:
        used = [f.name for f in schema.categorical]
        used += [f.name for f in schema.numeric if f.boundaries is not None]
        ignored = [f.name for f in schema.numeric if f.boundaries is None]
        return used, ignored
    if isinstance(features, str):
        raise ValueError(
            f"features must be a list of feature names, not a string. Received: {features!r}"
        )
    used = list(dict.fromkeys(features))
    if not used:
        raise ValueError("features is empty; give at least one feature name (or None)")
    unknown = [name for name in used if name not in scalars]
    if unknown:
        raise ValueError(
            f"features {unknown} are not in the schema; its scalar features are {sorted(scalars)}"
        )
    unbucketed = [
        name
        for name in used
        if isinstance(scalars[name], NumericFeature) and scalars[name].boundaries is None
    ]
    if unbucketed:
        raise ValueError(
            f"numeric features {unbucketed} have no quantile boundaries, so they cannot be "
            "one-hot encoded; leave them out of features"
        )
    return used, []


def _category_codes(schema: Schema, name: str, values: np.ndarray) -> np.ndarray:
    """Integer codes of one feature's raw values (quantile bucket for a numeric feature)."""
    feature = schema.feature(name)
    if isinstance(feature, NumericFeature):
        return np.searchsorted(np.asarray(feature.boundaries), values, side="right")
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    # Strings (bytes objects): relabel as integers; a pure relabelling, the encoder's
    # categories are still those of the fit rows only.
    return np.unique(values, return_inverse=True)[1].reshape(-1)


def _standardise(parts: list[np.ndarray], fit: int) -> list[np.ndarray]:
    """Standardises the dense matrix `parts[k]` of every split with the mean / std of `parts[fit]`."""
    mean = parts[fit].mean(axis=0)
    std = parts[fit].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(p - mean) / std for p in parts]


def _fit_logistic(
    x: list[sp.csr_matrix],
    y: list[np.ndarray],
    groups: list[np.ndarray],
    c_grid: Sequence[float],
    max_iter: int,
    seed: int,
) -> dict[str, Any]:
    """Fits one LR per `C` (smallest first, each warm-started from the last) and scores the best.

    `x`, `y`, `groups` hold the fit, validation and test splits.
    """
    model = LogisticRegression(
        C=float(c_grid[0]),
        solver="lbfgs",
        tol=TOL,
        max_iter=max_iter,
        warm_start=True,
        random_state=seed,
    )
    grid: list[dict[str, Any]] = []
    best: tuple[float, LogisticRegression, dict[str, float], dict[str, Any]] | None = None
    for c in sorted(float(c) for c in c_grid):
        model.set_params(C=c)
        # One thread: on a small, shared machine OpenMP's spinning threads cost far more
        # than they save (about 10x slower lbfgs iterations on 2 busy cores).
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(1):
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x[0], y[0])
        problems = [
            str(w.message).split("\n")[0] for w in caught if w.category is ConvergenceWarning
        ]
        n_iter = int(np.max(model.n_iter_))
        validation = ctr_metrics(y[1], model.predict_proba(x[1])[:, 1], groups[1])
        entry: dict[str, Any] = {
            "C": c,
            "validation_logloss": validation["logloss"],
            "validation_auc": validation["auc"],
            "n_iter": n_iter,
            "converged": not problems and n_iter < max_iter,
        }
        if problems:
            entry["warning"] = problems[0]
        grid.append(entry)
        if best is None or validation["logloss"] < best[0]:
            best = (validation["logloss"], copy.deepcopy(model), validation, entry)
    assert best is not None
    _, chosen, validation, entry = best
    test = ctr_metrics(y[2], chosen.predict_proba(x[2])[:, 1], groups[2])
    return {
        "hyperparameters": {"C": entry["C"]},
        "converged": entry["converged"],
        "all_converged": all(g["converged"] for g in grid),
        "grid": grid,
        "validation": validation,
        "test": test,
    }


# ----------------------------------------------------------------------------- entry point


def run_baselines(
    data_dir: str | os.PathLike,
    *,
    validation_fraction: float = 0.1,
    features: Sequence[str] | None = None,
    seed: int = 0,
    prior_strengths: Sequence[float] = PRIOR_STRENGTHS,
    c_grid: Sequence[float] = C_GRID,
    max_iter: int = MAX_ITER,
) -> dict[str, Any]:
    """Fits the baselines on a dataset directory's fit rows and scores its test split.

    The train split is carved as `widedeep train` carves it
    (`widedeep.data.carve.validation_carve`): the fit rows fit every baseline, the
    validation rows pick its hyper-parameter by log loss;
    the test split is scored once, with the chosen hyper-parameter. See the module
    docstring for the baselines.

    Args:
        data_dir: the dataset directory.
        validation_fraction: the share of the train split used for validation,
            as `TrainConfig.validation_fraction` (must leave at least
            one validation row: the hyper-parameters are chosen on it).
        features: the scalar features of the logistic regressions; defaults to every
            categorical feature plus the numeric features with quantile boundaries
            (bucketised). Numeric features must have boundaries.
        seed: passed to `LogisticRegression(random_state=seed)` and recorded; lbfgs
            is deterministic, so the results do not depend on it.
        prior_strengths: the popularity baseline's grid of `a`.
        c_grid: the logistic regressions' grid of `C` (each fit is warm-started from
            the previous, smaller `C`; the optimum does not depend on the start).
        max_iter: lbfgs iteration cap; a fit that reaches it, or for which lbfgs
            reports no convergence, has `"converged": false` in its grid entry.

    Returns:
        A JSON-serialisable dict: `data`, `validation_fraction`, `carve` (one of
        `widedeep.data.carve.CARVES`), `seed`, `rows` (`fit`, `validation`, `test`),
        `fit_ctr`, `seconds` and `baselines`, which
        maps each name of `BASELINES` to `{"hyperparameters": {...}, "validation":
        ctr_metrics, "test": ctr_metrics, "seconds": ...}` (plus a `grid` of the
        validation scores of every candidate, and the features used), or to
        `{"skipped": reason}`.

    Raises:
        ValueError: when the cut leaves no validation row (e.g.
            `validation_fraction=0`) or no fit row, when the fit rows hold a single
            class, or when `features` names a feature the schema lacks.
        DatasetError: when the directory or a split is missing or malformed.

    Example:

    ```python
    result = run_baselines("data/kr", validation_fraction=0.1)
    for name, b in result["baselines"].items():
        print(name, b.get("hyperparameters"), b.get("test", {}).get("auc"))
    ```
    """
    start = time.perf_counter()
    data_dir = os.fspath(data_dir)
    schema, meta = load_dataset_dir(data_dir)
    used, ignored = _resolve_features(schema, features)
    item = schema.target_item_features[0] if schema.target_item_features else None
    sequence_columns = [s.input_name(s.item_features[0]) for s in schema.sequences]
    names = [schema.label, schema.group_key, *used, *([item] if item else []), *sequence_columns]
    names = list(dict.fromkeys(names))

    train = read_columns(data_dir, "train", names)
    test = read_columns(data_dir, "test", names)
    carve = validation_carve(
        data_dir, validation_fraction, meta=meta, users=train[schema.group_key]
    )
    fit_stop, total = carve.num_fit_rows, carve.total
    if carve.num_validation_rows == 0:
        raise ValueError(
            f"dataset {data_dir}: validation_fraction={validation_fraction} leaves no validation "
            f"slice (0 of the {total} train rows); the baselines choose their hyper-parameters "
            "on it: use validation_fraction > 0 (widedeep train's default is 0.1)"
        )
    if fit_stop == 0:
        raise ValueError(
            f"dataset {data_dir}: validation_fraction={validation_fraction} leaves no fit rows "
            f"(all {total} train rows validate)"
        )
    rows = len(train[schema.label])
    if rows != total:
        raise ValueError(
            f"dataset {data_dir}: meta.json says the train split has {total} rows, "
            f"its records hold {rows}"
        )
    cuts = [carve.fit_rows, carve.validation_rows]
    splits = [{k: take_rows(v, c) for k, v in train.items()} for c in cuts] + [test]
    y = [s[schema.label].astype(np.int64) for s in splits]
    groups = [s[schema.group_key] for s in splits]
    fit_ctr = float(y[0].mean())
    if fit_ctr in (0.0, 1.0):
        raise ValueError(
            f"dataset {data_dir}: the {fit_stop} fit rows are all of one class "
            f"(click rate {fit_ctr}); no baseline can be fitted"
        )
    baselines: dict[str, Any] = {}

    # constant ------------------------------------------------------------------
    t0 = time.perf_counter()
    baselines["constant"] = {
        "hyperparameters": {"probability": fit_ctr},
        "validation": ctr_metrics(y[1], np.full(len(y[1]), fit_ctr), groups[1]),
        "test": ctr_metrics(y[2], np.full(len(y[2]), fit_ctr), groups[2]),
        "seconds": time.perf_counter() - t0,
    }

    # popularity ----------------------------------------------------------------
    t0 = time.perf_counter()
    if item is None:
        baselines["popularity"] = {"skipped": "the schema has no target_item_features"}
    else:
        grid, best = [], None
        for a in prior_strengths:
            p = popularity_scores(
                splits[0][item], y[0], splits[1][item], prior=fit_ctr, prior_strength=float(a)
            )
            validation = ctr_metrics(y[1], p, groups[1])
            entry = {
                "prior_strength": float(a),
                "validation_logloss": validation["logloss"],
                "validation_auc": validation["auc"],
            }
            grid.append(entry)
            if best is None or validation["logloss"] < best[0]["logloss"]:
                best = (validation, float(a))
        assert best is not None
        validation, a = best
        p = popularity_scores(
            splits[0][item], y[0], splits[2][item], prior=fit_ctr, prior_strength=a
        )
        baselines["popularity"] = {
            "item_feature": item,
            "hyperparameters": {"prior_strength": a},
            "grid": grid,
            "validation": validation,
            "test": ctr_metrics(y[2], p, groups[2]),
            "seconds": time.perf_counter() - t0,
        }

    # logistic regressions --------------------------------------------------------
    t0 = time.perf_counter()
    codes = {
        name: _category_codes(schema, name, np.concatenate([s[name] for s in splits]))
        for name in used
    }
    bounds = np.cumsum([0, *(len(s[schema.label]) for s in splits)])
    matrix = np.stack([codes[name] for name in used], axis=1)
    raw = [matrix[bounds[k] : bounds[k + 1]] for k in range(3)]
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=True, dtype=np.float64)
    one_hot = [encoder.fit_transform(raw[0]).tocsr()] + [
        encoder.transform(r).tocsr() for r in raw[1:]
    ]
    described = {
        "features": used,
        "bucketised_numeric": [n for n in used if isinstance(schema.feature(n), NumericFeature)],
        "ignored_numeric": ignored,
        "one_hot_columns": int(one_hot[0].shape[1]),
    }
    lr = _fit_logistic(one_hot, y, groups, c_grid, max_iter, seed)
    baselines["logistic_regression"] = {
        **described,
        **lr,
        "seconds": time.perf_counter() - t0,
    }

    t0 = time.perf_counter()
    if not schema.sequences:
        baselines["lr_history"] = {"skipped": "the schema has no sequence features"}
    else:
        stats = [history_statistics(s, schema, fit_ctr) for s in splits]
        stat_names = list(stats[0])
        dense = _standardise([np.stack([s[n] for n in stat_names], axis=1) for s in stats], 0)
        x = [sp.hstack([o, sp.csr_matrix(d)], format="csr") for o, d in zip(one_hot, dense)]
        lr = _fit_logistic(x, y, groups, c_grid, max_iter, seed)
        baselines["lr_history"] = {
            **described,
            "history_features": stat_names,
            **lr,
            "seconds": time.perf_counter() - t0,
        }

    return {
        "data": data_dir,
        "validation_fraction": validation_fraction,
        "carve": carve.kind,
        "seed": seed,
        "rows": {"fit": fit_stop, "validation": total - fit_stop, "test": len(y[2])},
        "fit_ctr": fit_ctr,
        "baselines": baselines,
        "seconds": time.perf_counter() - start,
    }
