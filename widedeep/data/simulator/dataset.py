"""The simulator's dataset directory: its schema, its oracle metrics, and writing it.

`simulate_dataset` writes the impressions of `widedeep.data.simulator.impressions`
chunk by chunk. Besides `oracle_auc` (the true probabilities), `meta.json` breaks the
oracle down per split (under `oracle`): `oracle_auc_without_feedback` ranks by terms
(a)-(c) of `widedeep.data.simulator.world` only; `oracle_auc_attributes_only` also
replaces each user's taste by its region and age-group part, dropping the individual
noise that a user id (or the user's history) must reveal;
`oracle_auc_attributes_and_feedback` adds (d) back. They show how much of a model's
gap to the oracle is feedback, and how much is individual taste that few impressions
per user can only partly reveal.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from widedeep.data.simulator.config import SimulatorConfig
from widedeep.data.simulator.impressions import iter_chunks
from widedeep.metrics import auc, logloss
from widedeep.schema import (
    FEEDBACK_SEQUENCES,
    FEEDBACK_TYPES,
    CategoricalFeature,
    CrossFeature,
    NumericFeature,
    Schema,
    SequenceFeature,
)

if TYPE_CHECKING:
    from widedeep.data.writer import DatasetWriter

__all__ = ["build_schema", "simulate_dataset"]

_ITEM_FEATURES = ["item_id", "item_category"]


def build_schema(config: SimulatorConfig, train_columns: dict[str, np.ndarray]) -> Schema:
    """The schema of simulated data; numeric statistics come from `train_columns` only.

    Args:
        config: the simulator settings (vocabulary sizes, `max_length`).
        train_columns: columns of the train split; only `item_duration` is read.

    Returns:
        A `Schema`: ids (deep only), attributes (wide and deep), `item_duration`
        (standardised for deep, 10 quantile buckets for wide), region x category
        and age-group x category crosses (wide) and the click / unclick / dislike
        sequences of `[item_id, item_category]`.
    """
    c = config
    duration = np.asarray(train_columns["item_duration"], dtype=np.float64)
    if duration.size == 0:
        raise ValueError("build_schema: the train split is empty; cannot compute statistics")
    boundaries = sorted(
        {round(float(q), 4) for q in np.quantile(duration, np.linspace(0.1, 0.9, 9))}
    )
    std = float(duration.std())
    return Schema(
        categorical=[
            CategoricalFeature(
                "user_id", vocabulary=list(range(c.num_users)), wide=False, embedding_dim=16
            ),
            CategoricalFeature(
                "item_id", vocabulary=list(range(c.num_items)), wide=False, embedding_dim=16
            ),
            CategoricalFeature(
                "user_region", vocabulary=list(range(c.num_regions)), embedding_dim=4
            ),
            CategoricalFeature(
                "user_age_group", vocabulary=list(range(c.num_age_groups)), embedding_dim=4
            ),
            CategoricalFeature(
                "item_category", vocabulary=list(range(c.num_categories)), embedding_dim=8
            ),
            CategoricalFeature(
                "item_author", vocabulary=list(range(c.num_authors)), embedding_dim=8
            ),
        ],
        numeric=[
            NumericFeature(
                "item_duration",
                mean=float(duration.mean()),
                std=std if std > 0 else 1.0,
                boundaries=boundaries,
                wide=True,
            )
        ],
        crosses=[
            CrossFeature(
                "user_region_x_item_category",
                ["user_region", "item_category"],
                hash_buckets=4 * c.num_regions * c.num_categories,
            ),
            CrossFeature(
                "user_age_group_x_item_category",
                ["user_age_group", "item_category"],
                hash_buckets=4 * c.num_age_groups * c.num_categories,
            ),
        ],
        sequences=[
            SequenceFeature(name, list(_ITEM_FEATURES), c.max_length) for name in FEEDBACK_SEQUENCES
        ],
        label="label",
        feedback="feedback",
        group_key="user_id",
        target_item_features=list(_ITEM_FEATURES),
    )


class _SplitStats:
    """Accumulates what the oracle metrics need, chunk by chunk."""

    def __init__(self) -> None:
        self.labels: list[np.ndarray] = []
        self.probability: list[np.ndarray] = []
        self.static: list[np.ndarray] = []
        self.attribute_static: list[np.ndarray] = []
        self.feedback_logit: list[np.ndarray] = []
        self.feedback: list[np.ndarray] = []

    def add(self, columns: dict[str, np.ndarray], diagnostics: dict[str, np.ndarray]) -> None:
        self.labels.append(columns["label"].astype(np.int8))
        self.probability.append(columns["true_probability"])
        self.static.append(diagnostics["static_logit"].astype(np.float32))
        self.attribute_static.append(diagnostics["attribute_static_logit"].astype(np.float32))
        self.feedback_logit.append(diagnostics["feedback_logit"].astype(np.float32))
        self.feedback.append(columns["feedback"].astype(np.int8))

    def summary(self) -> dict[str, Any]:
        if not self.labels:
            return {"examples": 0}
        labels = np.concatenate(self.labels)
        probability = np.concatenate(self.probability)
        counts = np.bincount(np.concatenate(self.feedback), minlength=len(FEEDBACK_TYPES))
        return {
            "examples": int(labels.size),
            "click_rate": float(labels.mean()),
            "oracle_auc": auc(labels, probability),
            "oracle_logloss": logloss(labels, probability),
            "oracle_auc_without_feedback": auc(labels, np.concatenate(self.static)),
            "oracle_auc_attributes_only": auc(labels, np.concatenate(self.attribute_static)),
            "oracle_auc_attributes_and_feedback": auc(
                labels, np.concatenate(self.attribute_static) + np.concatenate(self.feedback_logit)
            ),
            "feedback_counts": {
                name: int(n) for name, n in zip(FEEDBACK_TYPES, counts, strict=True)
            },
        }


def simulate_dataset(
    out_dir: str,
    config: SimulatorConfig | None = None,
    progress: bool = False,
    *,
    num_shards: dict[str, int] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Simulates impressions and writes them as a dataset directory (see `widedeep.data.dataset_format`).

    Rows are simulated and written in chunks, so memory stays flat however many
    impressions are asked for. Besides the features, label, feedback and group
    key, records keep `true_probability` and `round`.

    Args:
        out_dir: the dataset directory to write.
        config: the settings; defaults to `SimulatorConfig()`.
        progress: print a progress line to stderr.
        num_shards: shards per split; defaults to `{"train": 8, "test": 2}`.
        overwrite: replace a dataset already in `out_dir`.

    Returns:
        The meta written to `meta.json`: `oracle_auc` / `oracle_logloss` of
        `true_probability` on the test split, `train_oracle_auc` /
        `train_oracle_logloss`, `base_click_rate`, `dislike_rate`,
        `feedback_counts`, per-split details under `oracle`, the `settings`
        (the full config) and `splits`.

    Raises:
        widedeep.directory_lock.DirectoryBusyError: if another process writes into `out_dir`.
        widedeep.safe_output.NoSpaceError: if the disk fills up (the partial dataset is removed).
    """
    from widedeep.data.writer import DatasetWriter
    from widedeep.directory_lock import directory_lock

    config = config or SimulatorConfig()
    with directory_lock(out_dir, "--out", "simulate"):
        writer = DatasetWriter(
            out_dir, num_shards, overwrite=overwrite, expected_rows=config.num_impressions
        )
        with writer:
            return _simulate_into(writer, config, progress)


def _simulate_into(
    writer: DatasetWriter, config: SimulatorConfig, progress: bool
) -> dict[str, Any]:
    stats = {"train": _SplitStats(), "test": _SplitStats()}
    train_duration: list[np.ndarray] = []
    done, started = 0, time.perf_counter()
    for split, columns, diagnostics in iter_chunks(config):
        writer.write(split, columns)
        stats[split].add(columns, diagnostics)
        if split == "train":
            train_duration.append(columns["item_duration"])
        done += columns["label"].size
        if progress:
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(
                f"\rsimulated {done}/{config.num_impressions} impressions ({rate:,.0f}/s)",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if progress:
        print(file=sys.stderr)
    schema = build_schema(
        config, {"item_duration": np.concatenate(train_duration) if train_duration else np.zeros(0)}
    )
    train, test = stats["train"].summary(), stats["test"].summary()
    counts = {
        name: train.get("feedback_counts", {}).get(name, 0)
        + test.get("feedback_counts", {}).get(name, 0)
        for name in FEEDBACK_TYPES
    }
    total = max(sum(counts.values()), 1)
    meta = {
        "source": "simulator",
        "oracle_auc": test.get("oracle_auc"),
        "oracle_logloss": test.get("oracle_logloss"),
        "train_oracle_auc": train["oracle_auc"],
        "train_oracle_logloss": train["oracle_logloss"],
        "base_click_rate": counts["click"] / total,
        "dislike_rate": counts["dislike"] / total,
        "feedback_counts": counts,
        "oracle": {"train": train, "test": test},
        "settings": dataclasses.asdict(config),
    }
    return writer.close(schema, meta)
