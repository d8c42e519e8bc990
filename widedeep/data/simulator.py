"""A click-log simulator with a planted, documented ground truth.

For learning the library and for benchmarks: every impression carries the
probability of a click that generated it (`true_probability`), so a model can be
compared with the best possible one (the *oracle*, whose AUC and log loss are
recorded in `meta.json`).

The world:

* **Users** have a region and an age group (categorical) and a latent taste
  vector: the sum of a region centroid, an age-group centroid and individual
  noise (`user_noise`). Active users appear more often (log-normal activity).
* **Items** have an author, the author's category and a latent vector: the
  category centroid plus individual noise (`item_noise`). Each item has a
  numeric `item_duration` (log-normal) and a popularity (Zipf).
* **The click logit** of user `u` shown item `i` is the sum of

  (a) `bias`, plus large +/-`cross_effect` effects in a sparse random subset
      (`cross_cells_fraction`) of the region x category and age-group x
      category cells: exceptions that a wide model memorises through its
      crossed features;
  (b) `affinity_effect * <taste_u, latent_i> / sqrt(latent_dim)`, the latent
      user-item affinity: part of it follows from the attributes, the rest only
      from user and item embeddings (generalisation);
  (c) an inverted-U effect of the item's log-duration (`duration_effect`) and
      an author quality bias (`author_effect`);
  (d) the user's own recent feedback: with `sim_s` the recency-weighted
      (`feedback_decay` per position) mean cosine similarity, in latent item
      space, between the target and the items of the user's click / unclick /
      dislike history, the logit gains `click_feedback_effect * sim_click`,
      and loses `unclick_feedback_effect * sim_unclick` (weak) and
      `dislike_feedback_effect * sim_dislike` (strong). Only a model that reads
      the feedback sequences (DFN) can capture (d).

* **Impressions** are generated causally, in rounds. In each round a set of
  `users_per_round` distinct users (drawn in proportion to activity) each get
  one impression: `candidates_per_impression` items are drawn by popularity and
  the one shown is picked with a bias towards the user's affinity
  (`exposure_affinity`). The click probability is computed from the state
  *before* the impression, the click is sampled, and a non-click becomes a
  dislike with a probability that rises with low affinity and with similarity
  to earlier dislikes (`dislike_rate` sets the base rate). Then the item is
  pushed to the front of the user's click, unclick or dislike history (the
  last `max_length` kept, most recent first). A row's sequences are the
  histories before its impression, so they never contain the impression itself.
* **Splits** are by time: the last `test_fraction` of the impressions (whole
  rounds) are the test split.

Besides `oracle_auc` (the true probabilities), `meta.json` breaks the oracle down
per split (under `oracle`): `oracle_auc_without_feedback` ranks by terms (a)-(c)
only; `oracle_auc_attributes_only` also replaces each user's taste by its region and
age-group part, dropping the individual noise that a user id (or the user's
history) must reveal; `oracle_auc_attributes_and_feedback` adds (d) back. They show
how much of a model's gap to the oracle is feedback, and how much is individual
taste that few impressions per user can only partly reveal.

Everything is drawn from one seeded generator in a fixed order, so a seed gives
byte-identical records. Example:

```python
from widedeep.data.simulator import SimulatorConfig, simulate_dataset

meta = simulate_dataset("/tmp/sim", SimulatorConfig(seed=1))
print(meta["oracle_auc"], meta["base_click_rate"])
```
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from widedeep.errors import UsageError
from widedeep.metrics import auc, logloss
from widedeep.schema import (
    FEEDBACK_SEQUENCES,
    FEEDBACK_TYPES,
    MISSING_INT,
    CategoricalFeature,
    CrossFeature,
    NumericFeature,
    Schema,
    SequenceFeature,
)

if TYPE_CHECKING:
    from widedeep.data.writer import DatasetWriter

__all__ = [
    "SimulatorConfig",
    "build_schema",
    "click_logit",
    "first_test_round",
    "simulate",
    "simulate_dataset",
]

_CODE = {name: FEEDBACK_TYPES.index(name) for name in FEEDBACK_TYPES}
_ITEM_FEATURES = ["item_id", "item_category"]


@dataclass
class SimulatorConfig:
    """Settings of the simulated world; see the module docstring for what each effect does.

    Args:
        seed: seed of every random draw.
        num_users, num_items: sizes of the id spaces.
        num_impressions: total impressions (train and test).
        users_per_round: distinct users receiving one impression per round.
        num_regions, num_age_groups, num_categories, num_authors: attribute cardinalities.
        latent_dim: width of the latent taste / item vectors.
        max_length: history length kept per feedback type (the sequences' `L`).
        test_fraction: share of the impressions (the most recent rounds) in the test split.
        candidates_per_impression: popular items drawn before picking the one shown.
        popularity_exponent: Zipf exponent of item popularity.
        exposure_affinity: how strongly the item shown follows the user's affinity.
        user_noise, item_noise: individual part of the latent vectors, relative
            to the attribute centroids (each centroid has unit scale).
        bias: intercept of the click logit.
        cross_cells_fraction: share of region x category and age x category cells
            with a planted effect.
        cross_effect: size of a planted cell effect (its sign is random).
        affinity_effect: weight of the latent affinity.
        duration_effect: height of the inverted-U effect of log-duration.
        author_effect: standard deviation of the author quality bias.
        click_feedback_effect, unclick_feedback_effect, dislike_feedback_effect:
            weights of the similarity to the click (+), unclick (-) and dislike (-) histories.
        feedback_decay: recency weight ratio between consecutive history positions.
        dislike_rate: base probability that a non-click is a dislike.
        dislike_affinity_effect: how much low affinity raises the dislike probability.
        dislike_similarity_effect: how much similarity to earlier dislikes raises it.
    """

    seed: int = 0
    num_users: int = 4000
    num_items: int = 1500
    num_impressions: int = 250_000
    users_per_round: int = 1000
    num_regions: int = 30
    num_age_groups: int = 6
    num_categories: int = 40
    num_authors: int = 300
    latent_dim: int = 16
    max_length: int = 30
    test_fraction: float = 0.2
    candidates_per_impression: int = 10
    popularity_exponent: float = 0.8
    exposure_affinity: float = 1.0
    user_noise: float = 1.5
    item_noise: float = 1.0
    bias: float = -2.7
    cross_cells_fraction: float = 0.1
    cross_effect: float = 2.0
    affinity_effect: float = 1.4
    duration_effect: float = 0.6
    author_effect: float = 0.3
    click_feedback_effect: float = 3.5
    unclick_feedback_effect: float = 1.0
    dislike_feedback_effect: float = 5.0
    feedback_decay: float = 0.7
    dislike_rate: float = 0.05
    dislike_affinity_effect: float = 1.0
    dislike_similarity_effect: float = 2.0

    def __post_init__(self) -> None:
        positive = (
            "num_users", "num_items", "num_impressions", "users_per_round", "num_regions",
            "num_age_groups", "num_categories", "num_authors", "latent_dim", "max_length",
            "candidates_per_impression",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(
                    f"SimulatorConfig.{name} must be an int >= 1. Received: {name}={value!r}"
                )
        if self.users_per_round > self.num_users:
            raise UsageError(
                "SimulatorConfig.users_per_round cannot exceed num_users (users in a round are "
                f"distinct). Received: users_per_round={self.users_per_round}, num_users={self.num_users}"
            )
        if self.num_authors < self.num_categories:
            raise UsageError(
                "SimulatorConfig.num_authors must be >= num_categories (each author writes in one "
                f"category). Received: num_authors={self.num_authors}, num_categories={self.num_categories}"
            )
        if not 0.0 <= self.test_fraction < 1.0:
            raise UsageError(
                f"SimulatorConfig.test_fraction must be in [0, 1). Received: {self.test_fraction!r}"
            )
        if not 0.0 < self.dislike_rate < 1.0:
            raise UsageError(
                f"SimulatorConfig.dislike_rate must be in (0, 1). Received: {self.dislike_rate!r}"
            )
        if not 0.0 < self.feedback_decay <= 1.0:
            raise UsageError(
                f"SimulatorConfig.feedback_decay must be in (0, 1]. Received: {self.feedback_decay!r}"
            )
        if not 0.0 <= self.cross_cells_fraction <= 1.0:
            raise UsageError(
                f"SimulatorConfig.cross_cells_fraction must be in [0, 1]. Received: {self.cross_cells_fraction!r}"
            )

    @property
    def num_rounds(self) -> int:
        return math.ceil(self.num_impressions / self.users_per_round)


def first_test_round(config: SimulatorConfig) -> int:
    """Index of the first round of the test split (`num_rounds` when there is no test split)."""
    train_impressions = (1.0 - config.test_fraction) * config.num_impressions
    return min(config.num_rounds, math.ceil(train_impressions / config.users_per_round - 1e-9))


# --------------------------------------------------------------------------------------------
# The world: fixed attributes and latent vectors.
# --------------------------------------------------------------------------------------------


@dataclass
class _World:
    user_region: np.ndarray
    user_age_group: np.ndarray
    user_activity_log: np.ndarray
    user_taste: np.ndarray  # [users, latent_dim]
    user_taste_attributes: np.ndarray  # the part of user_taste set by region and age group
    item_category: np.ndarray
    item_author: np.ndarray
    item_duration: np.ndarray  # float32 seconds
    item_latent: np.ndarray  # [items, latent_dim]
    item_popularity: np.ndarray  # probabilities
    item_static: np.ndarray  # duration + author effects of the logit, per item
    item_similarity: np.ndarray  # [items, items] cosine similarity of latent vectors, float32
    region_x_category: np.ndarray  # planted cell effects
    age_x_category: np.ndarray


def _make_world(config: SimulatorConfig, rng: np.random.Generator) -> _World:
    c = config
    d = c.latent_dim
    region_centroid = rng.normal(size=(c.num_regions, d))
    age_centroid = rng.normal(size=(c.num_age_groups, d))
    category_centroid = rng.normal(size=(c.num_categories, d))

    user_region = rng.integers(0, c.num_regions, c.num_users)
    user_age_group = rng.integers(0, c.num_age_groups, c.num_users)
    user_activity_log = rng.normal(0.0, 0.8, c.num_users)
    scale = math.sqrt(2.0 + c.user_noise**2)
    user_taste_attributes = (region_centroid[user_region] + age_centroid[user_age_group]) / scale
    user_taste = user_taste_attributes + c.user_noise * rng.normal(size=(c.num_users, d)) / scale

    author_category = np.concatenate(
        [
            np.arange(c.num_categories),
            rng.integers(0, c.num_categories, c.num_authors - c.num_categories),
        ]
    )
    author_quality = c.author_effect * rng.normal(size=c.num_authors)
    item_author = rng.integers(0, c.num_authors, c.num_items)
    item_category = author_category[item_author]
    item_latent = (
        category_centroid[item_category] + c.item_noise * rng.normal(size=(c.num_items, d))
    ) / math.sqrt(1.0 + c.item_noise**2)
    log_duration = rng.normal(math.log(90.0), 0.6, c.num_items)
    item_duration = np.exp(log_duration).astype(np.float32)
    z = (np.log(item_duration.astype(np.float64)) - math.log(90.0) - 0.3) / 0.6
    duration_term = c.duration_effect * np.maximum(0.5 - 0.5 * z**2, -1.5)
    rank = rng.permutation(c.num_items)
    popularity = (rank + 1.0) ** -c.popularity_exponent
    unit = item_latent / np.linalg.norm(item_latent, axis=1, keepdims=True)

    def cells(rows: int) -> np.ndarray:
        planted = rng.random((rows, c.num_categories)) < c.cross_cells_fraction
        sign = rng.choice([-1.0, 1.0], size=(rows, c.num_categories))
        return np.where(planted, c.cross_effect * sign, 0.0)

    return _World(
        user_region=user_region,
        user_age_group=user_age_group,
        user_activity_log=user_activity_log,
        user_taste=user_taste,
        user_taste_attributes=user_taste_attributes,
        item_category=item_category,
        item_author=item_author,
        item_duration=item_duration,
        item_latent=item_latent,
        item_popularity=popularity / popularity.sum(),
        item_static=duration_term + author_quality[item_author],
        item_similarity=(unit @ unit.T).astype(np.float32),
        region_x_category=cells(c.num_regions),
        age_x_category=cells(c.num_age_groups),
    )


def _affinity(config: SimulatorConfig, taste: np.ndarray, latent: np.ndarray) -> np.ndarray:
    return np.einsum("...d,...d->...", taste, latent) / math.sqrt(config.latent_dim)


def _history_similarity(
    similarity: np.ndarray, target: np.ndarray, history: np.ndarray, decay: float
) -> np.ndarray:
    """Recency-weighted mean similarity of each target to its history (0 for an empty history).

    Args:
        similarity: `[items, items]` item similarity.
        target: `[n]` item ids.
        history: `[n, L]` item ids, most recent first, padded with -1.
        decay: weight ratio between consecutive positions.
    """
    valid = history >= 0
    weights = (decay ** np.arange(history.shape[1]))[None, :] * valid
    sims = similarity[target[:, None], np.where(valid, history, 0)]
    total = weights.sum(axis=1)
    return np.divide(
        (weights * sims).sum(axis=1), total, out=np.zeros(len(target)), where=total > 0
    )


def click_logit(
    config: SimulatorConfig,
    *,
    static_logit: np.ndarray,
    similarity: np.ndarray,
    target: np.ndarray,
    click_history: np.ndarray,
    unclick_history: np.ndarray,
    dislike_history: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The ground-truth click logit: the static part plus the feedback effect (d).

    Args:
        config: the simulator settings (effect sizes).
        static_logit: `[n]` terms (a)-(c) of the module docstring.
        similarity: `[items, items]` item similarity in latent space.
        target: `[n]` target item ids.
        click_history, unclick_history, dislike_history: `[n, L]` item ids, most
            recent first, padded with -1.

    Returns:
        `(logit, similarities)`: the logit `[n]` and the recency-weighted mean
        similarity of the target to each history, by sequence name.
    """
    sims = {
        name: _history_similarity(similarity, target, history, config.feedback_decay)
        for name, history in zip(
            FEEDBACK_SEQUENCES, (click_history, unclick_history, dislike_history), strict=True
        )
    }
    logit = (
        static_logit
        + config.click_feedback_effect * sims["click"]
        - config.unclick_feedback_effect * sims["unclick"]
        - config.dislike_feedback_effect * sims["dislike"]
    )
    return logit, sims


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


# --------------------------------------------------------------------------------------------
# The impression process.
# --------------------------------------------------------------------------------------------


def _iter_chunks(
    config: SimulatorConfig, rows_per_chunk: int = 65_536
) -> Iterator[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Yields `(split, columns, diagnostics)` for consecutive chunks of whole rounds, in time order."""
    c = config
    rng = np.random.default_rng(c.seed)
    world = _make_world(c, rng)
    length = c.max_length
    histories = {
        name: np.full((c.num_users, length), MISSING_INT, dtype=np.int64)
        for name in FEEDBACK_SEQUENCES
    }
    test_start = first_test_round(c)
    rounds_per_chunk = max(1, rows_per_chunk // c.users_per_round)
    dislike_base = _logit(c.dislike_rate)

    buffered: list[dict[str, np.ndarray]] = []
    buffered_split = "train"

    def flush() -> tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]:
        rows = {k: np.concatenate([b[k] for b in buffered]) for k in buffered[0]}
        buffered.clear()
        diagnostics = {k[1:]: rows.pop(k) for k in list(rows) if k.startswith("_")}
        return buffered_split, _columns(rows, world), diagnostics

    for round_index in range(c.num_rounds):
        split = "train" if round_index < test_start else "test"
        if buffered and split != buffered_split:
            yield flush()
        buffered_split = split
        size = min(c.users_per_round, c.num_impressions - round_index * c.users_per_round)
        # Users: weighted sampling without replacement (Gumbel top-k), listed in id order.
        keys = world.user_activity_log + rng.gumbel(size=c.num_users)
        users = np.sort(np.argpartition(-keys, size - 1)[:size])
        # Item shown: popular candidates, picked with a bias towards affinity.
        candidates = rng.choice(
            c.num_items, size=(size, c.candidates_per_impression), p=world.item_popularity
        )
        taste = world.user_taste[users]
        candidate_affinity = _affinity(c, taste[:, None, :], world.item_latent[candidates])
        pick = np.argmax(
            c.exposure_affinity * candidate_affinity + rng.gumbel(size=candidates.shape), axis=1
        )
        items = candidates[np.arange(size), pick]
        affinity = candidate_affinity[np.arange(size), pick]
        category = world.item_category[items]
        static = (
            c.bias
            + world.region_x_category[world.user_region[users], category]
            + world.age_x_category[world.user_age_group[users], category]
            + c.affinity_effect * affinity
            + world.item_static[items]
        )
        before = {name: h[users] for name, h in histories.items()}
        logit, sims = click_logit(
            c,
            static_logit=static,
            similarity=world.item_similarity,
            target=items,
            click_history=before["click"],
            unclick_history=before["unclick"],
            dislike_history=before["dislike"],
        )
        probability = _sigmoid(logit).astype(np.float32)
        clicked = rng.random(size) < probability
        dislike_probability = _sigmoid(
            dislike_base
            - c.dislike_affinity_effect * affinity
            + c.dislike_similarity_effect * sims["dislike"]
        )
        disliked = ~clicked & (rng.random(size) < dislike_probability)
        feedback = np.where(
            clicked, _CODE["click"], np.where(disliked, _CODE["dislike"], _CODE["unclick"])
        )
        for name in FEEDBACK_SEQUENCES:
            mask = feedback == _CODE[name]
            who = users[mask]
            history = histories[name]
            history[who, 1:] = history[who, :-1]
            history[who, 0] = items[mask]
        buffered.append(
            {
                "user_id": users,
                "item_id": items,
                "label": clicked.astype(np.int64),
                "feedback": feedback.astype(np.int64),
                "true_probability": probability,
                "round": np.full(size, round_index, dtype=np.int64),
                **{f"{name}_item_id": before[name] for name in FEEDBACK_SEQUENCES},
                "_static_logit": static,
                "_attribute_static_logit": static
                - c.affinity_effect
                * (
                    affinity
                    - _affinity(c, world.user_taste_attributes[users], world.item_latent[items])
                ),
                "_feedback_logit": logit - static,
            }
        )
        if len(buffered) >= rounds_per_chunk:
            yield flush()
    if buffered:
        yield flush()


def _columns(rows: dict[str, np.ndarray], world: _World) -> dict[str, np.ndarray]:
    """Completes ids, label, feedback and item-id histories with every column of the records."""
    users, items = rows["user_id"], rows["item_id"]
    columns = {
        "user_id": users,
        "user_region": world.user_region[users],
        "user_age_group": world.user_age_group[users],
        "item_id": items,
        "item_category": world.item_category[items],
        "item_author": world.item_author[items],
        "item_duration": world.item_duration[items],
    }
    for name in FEEDBACK_SEQUENCES:
        history = rows[f"{name}_item_id"]
        columns[f"{name}_item_id"] = history
        columns[f"{name}_item_category"] = np.where(
            history >= 0, world.item_category[np.maximum(history, 0)], MISSING_INT
        )
    for name in ("label", "feedback", "true_probability", "round"):
        columns[name] = rows[name]
    return columns


def simulate(config: SimulatorConfig | None = None) -> dict[str, np.ndarray]:
    """Simulates every impression in memory (for tests and small experiments).

    Args:
        config: the settings; defaults to `SimulatorConfig()`.

    Returns:
        `{column: array}` with one row per impression, in time order: the
        features (`user_id`, `user_region`, `user_age_group`, `item_id`,
        `item_category`, `item_author`, `item_duration`), the sequences
        (`{click,unclick,dislike}_item_{id,category}`, `[n, max_length]`, padded
        with -1), `label`, `feedback`, `true_probability` and `round`. Rows with
        `round >= first_test_round(config)` form the test split.
    """
    config = config or SimulatorConfig()
    parts = [columns for _, columns, _ in _iter_chunks(config)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --------------------------------------------------------------------------------------------
# Schema, metrics and the dataset directory.
# --------------------------------------------------------------------------------------------


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
    for split, columns, diagnostics in _iter_chunks(config):
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
