"""The simulated world: its planted attributes and latent vectors, and the true click logit.

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

`make_world` draws the world (terms (a) and (c) fixed per cell and item, the vectors of
(b)); `latent_affinity` and `click_logit` compute (b) and (d) for the impressions that
`widedeep.data.simulator.impressions` samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from widedeep.data.simulator.config import SimulatorConfig
from widedeep.schema import FEEDBACK_SEQUENCES

__all__ = ["World", "click_logit", "latent_affinity", "make_world"]


@dataclass
class World:
    """The planted world: attributes and latent vectors by user and item id, and the cell effects.

    `make_world` draws it; every impression of a simulation reads this one world.
    """

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


def make_world(config: SimulatorConfig, rng: np.random.Generator) -> World:
    """Draws the world of `config` from `rng`, always in the same order.

    Args:
        config: the simulator settings.
        rng: the simulation's generator, seeded with `config.seed`; the world takes its
            first draws, the impressions the rest.

    Returns:
        The `World`.
    """
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

    return World(
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


def latent_affinity(config: SimulatorConfig, taste: np.ndarray, latent: np.ndarray) -> np.ndarray:
    """`<taste, latent> / sqrt(latent_dim)` over the last axis: term (b) before its weight."""
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
