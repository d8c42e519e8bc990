"""`SimulatorConfig`: the settings of the simulated world, and where its test split begins."""

from __future__ import annotations

import math
from dataclasses import dataclass

from widedeep.errors import UsageError

__all__ = ["SimulatorConfig", "first_test_round"]


@dataclass
class SimulatorConfig:
    """Settings of the simulated world; `widedeep.data.simulator.world` says what each effect does.

    Args:
        seed: seed of every random draw.
        num_users: size of the user id space.
        num_items: size of the item id space.
        num_impressions: total impressions (train and test).
        users_per_round: distinct users receiving one impression per round.
        num_regions: number of user regions.
        num_age_groups: number of user age groups.
        num_categories: number of item categories.
        num_authors: number of item authors.
        latent_dim: width of the latent taste / item vectors.
        max_length: history length kept per feedback type (the sequences' `L`).
        test_fraction: share of the impressions (the most recent rounds) in the test split.
        candidates_per_impression: popular items drawn before picking the one shown.
        popularity_exponent: Zipf exponent of item popularity.
        exposure_affinity: how strongly the item shown follows the user's affinity.
        user_noise: individual part of the users' latent vectors, relative to the
            attribute centroids (each centroid has unit scale).
        item_noise: individual part of the items' latent vectors, likewise.
        bias: intercept of the click logit.
        cross_cells_fraction: share of region x category and age x category cells
            with a planted effect.
        cross_effect: size of a planted cell effect (its sign is random).
        affinity_effect: weight of the latent affinity.
        duration_effect: height of the inverted-U effect of log-duration.
        author_effect: standard deviation of the author quality bias.
        click_feedback_effect: weight of the similarity to the click history (+).
        unclick_feedback_effect: weight of the similarity to the unclick history (-).
        dislike_feedback_effect: weight of the similarity to the dislike history (-).
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
