"""Sampling the impressions of the simulated world, causally, round by round.

In each round a set of `users_per_round` distinct users (drawn in proportion to
activity) each get one impression: `candidates_per_impression` items are drawn by
popularity and the one shown is picked with a bias towards the user's affinity
(`exposure_affinity`). The click probability is computed from the state *before* the
impression (`widedeep.data.simulator.world.click_logit`), the click is sampled, and a
non-click becomes a dislike with a probability that rises with low affinity and with
similarity to earlier dislikes (`dislike_rate` sets the base rate). Then the item is
pushed to the front of the user's click, unclick or dislike history (the last
`max_length` kept, most recent first). A row's sequences are the histories before its
impression, so they never contain the impression itself.

The splits are by time: the last `test_fraction` of the impressions (whole rounds) are
the test split (`widedeep.data.simulator.config.first_test_round`).

Everything is drawn from one generator seeded with `config.seed`, the world first, in a
fixed order, so a seed gives identical rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from widedeep.data.simulator.config import SimulatorConfig, first_test_round
from widedeep.data.simulator.world import World, click_logit, latent_affinity, make_world
from widedeep.schema import FEEDBACK_SEQUENCES, FEEDBACK_TYPES, MISSING_INT

__all__ = ["iter_chunks", "simulate"]

_CODE = {name: FEEDBACK_TYPES.index(name) for name in FEEDBACK_TYPES}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def iter_chunks(
    config: SimulatorConfig, rows_per_chunk: int = 65_536
) -> Iterator[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Yields `(split, columns, diagnostics)` for consecutive chunks of whole rounds, in time order.

    Args:
        config: the simulator settings.
        rows_per_chunk: about how many rows a chunk holds (whole rounds; a chunk never
            spans the train/test boundary).

    Yields:
        The split name, the columns of `simulate` for the chunk's rows, and per-row
        logits for the oracle metrics: `static_logit` (terms (a)-(c) of
        `widedeep.data.simulator.world`), `attribute_static_logit` (the same with each
        user's taste replaced by its region and age-group part) and `feedback_logit`
        (term (d)).
    """
    c = config
    rng = np.random.default_rng(c.seed)
    world = make_world(c, rng)
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
        candidate_affinity = latent_affinity(c, taste[:, None, :], world.item_latent[candidates])
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
                    - latent_affinity(
                        c, world.user_taste_attributes[users], world.item_latent[items]
                    )
                ),
                "_feedback_logit": logit - static,
            }
        )
        if len(buffered) >= rounds_per_chunk:
            yield flush()
    if buffered:
        yield flush()


def _columns(rows: dict[str, np.ndarray], world: World) -> dict[str, np.ndarray]:
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
    parts = [columns for _, columns, _ in iter_chunks(config)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
