"""SYNTHETIC logs written in the public KuaiRand and MovieLens file layouts.

THIS IS NOT THE REAL DATA. The impressions come from the project's simulator
(`widedeep.data.simulator.simulate`); this module only dresses them up as the
files the real releases ship (see `shared/data-formats.md`), so the loaders'
full path, parsing, several files merged by time, exact duplicates, stable
time ordering, feedback sequences, imputation and the train-only schema
statistics, runs at scale on files that look like the real ones. Metrics
measured on these files say how the models do on the simulator's world seen
through these layouts, nothing about Kuaishou or MovieLens users.

Mapping (simulator -> public columns):

KuaiRand (`write_kuairand`), three kinds of file:

* `log_standard_4_08_to_4_21_synthetic.csv`, `log_standard_4_22_to_5_08_synthetic.csv`:
  the log split at 2022-04-22 00:00 (Beijing time), every published column, in
  `time_ms` order. Round `r` of the simulator is a time slot of
  `31 days / rounds`; each impression gets a uniform time inside its slot (a
  user has one impression per round, so a user's order is the simulator's).
  `date` / `hourmin` are the Beijing date and hour (`HH00`) of `time_ms`.
  `is_click = label`, `is_hate = (feedback == dislike)`; the outcome columns the
  loader never reads (`is_like`, `long_view`, `play_time_ms`, ...) are drawn
  around the click. A small fraction of rows (`duplicate_fraction`) is written
  twice in a row, as the raw logs do.
* `user_features_synthetic.csv`: one row per simulator user.
  `user_active_degree` is the user's age group (named after the published
  degrees), `onehot_feat1` is the region; the other columns are random but
  plausible (counts log-normal with their published `*_range` buckets, some
  empty one-hot cells).
* `video_features_basic_synthetic.csv`: one row per simulator item.
  `author_id` is the simulator author (offset to a large id), `tag` is the
  category (sometimes followed by a second tag, quoted, as published),
  `video_duration` is `item_duration` in milliseconds; `video_type`,
  `upload_dt`, `upload_type`, `music_type`, ... are random, with a few empty
  cells.

MovieLens (`write_movielens`), the 100K (`u.data`, `u.user`, `u.item`) or 1M
(`ratings.dat`, `users.dat`, `movies.dat`) layout, latin-1:

* a click is rated 4 or 5, an unclick 3, a dislike 1 or 2; timestamps (seconds)
  spread the rounds over 1,000 days from 2000-04-25. A user rates a movie
  once, as in the real data: repeated (user, movie) impressions after the
  first are dropped (counted in the returned summary). `u.data` is written in
  random order, `ratings.dat` grouped by user (random order within a user), as
  the real files are not in time order either.
* users: the age group is one of the seven 1M age groups (an age inside it for
  100K), the region is the zip code's first three digits, gender and
  occupation are random.
* movies: the category is the first genre (18 categories, one per genre; a
  second genre is sometimes listed after it), a release year (a few missing)
  sits in the title (1M) or the release date (100K); some titles hold latin-1
  letters.

Example:

```python
# from benchmarks/ (scripts there import each other by module name)
from public_layouts import kuairand_config, write_kuairand
summary = write_kuairand("/tmp/kuairand-synthetic", kuairand_config(60_000))
```
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from widedeep.data.movielens import AGE_GROUPS, GENRES_100K, OCCUPATIONS_1M
from widedeep.data.simulator import SimulatorConfig, simulate
from widedeep.schema import FEEDBACK_TYPES

__all__ = [
    "KUAIRAND_LOG_HEADER",
    "KUAIRAND_USER_HEADER",
    "KUAIRAND_VIDEO_HEADER",
    "kuairand_config",
    "movielens_config",
    "write_kuairand",
    "write_movielens",
]

KUAIRAND_LOG_HEADER: tuple[str, ...] = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
    "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab",
)  # fmt: skip
"""Columns of `log_standard_*.csv` / `log_random_*.csv`, in published order."""

KUAIRAND_USER_HEADER: tuple[str, ...] = (
    "user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
    "follow_user_num", "follow_user_num_range", "fans_user_num", "fans_user_num_range",
    "friend_user_num", "friend_user_num_range", "register_days", "register_days_range",
    *(f"onehot_feat{i}" for i in range(18)),
)  # fmt: skip
"""Columns of `user_features_*.csv`, in published order."""

KUAIRAND_VIDEO_HEADER: tuple[str, ...] = (
    "video_id", "author_id", "video_type", "upload_dt", "upload_type", "visible_status",
    "video_duration", "server_width", "server_height", "music_id", "music_type", "tag",
)  # fmt: skip
"""Columns of `video_features_basic_*.csv`, in published order."""

ACTIVE_DEGREES: tuple[str, ...] = (
    "full_active", "high_active", "middle_active", "2_14_day_new", "single_low_active",
    "30day_retention", "day_new", "UNKNOWN",
)  # fmt: skip
"""Published `user_active_degree` values; the simulator's age group picks one."""

UPLOAD_TYPES: tuple[str, ...] = (
    "ShortImport", "LongImport", "Web", "LongCamera", "ShortCamera", "LongPicture",
    "PhotoCopy", "ShareFromOtherApp", "FollowShoot", "UNKNOWN",
)  # fmt: skip

_FOLLOW_RANGES = ((0, "0"), (10, "(0,10]"), (50, "(10,50]"), (100, "(50,100]"),
                  (150, "(100,150]"), (250, "(150,250]"), (500, "(250,500]"))  # fmt: skip
_FANS_RANGES = ((0, "0"), (9, "[1,10)"), (99, "[10,100)"), (999, "[100,1k)"),
                (4999, "[1k,5k)"), (9999, "[5k,1w)"))  # fmt: skip
_FRIEND_RANGES = ((0, "0"), (4, "[1,5)"), (29, "[5,30)"), (59, "[30,60)"), (119, "[60,120)"),
                  (249, "[120,250)"))  # fmt: skip
_REGISTER_RANGES = ((30, "15-30"), (60, "31-60"), (90, "61-90"), (180, "91-180"),
                    (365, "181-365"), (730, "366-730"))  # fmt: skip

OCCUPATIONS_100K: tuple[str, ...] = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip
"""The occupations listed in MovieLens 100K `u.occupation`."""

MOVIELENS_GENRES: tuple[str, ...] = GENRES_100K[1:]
"""The 18 genres shared by 100K (after `unknown`) and 1M; category `c` is genre `c`."""

_AGE_RANGES: dict[int, tuple[int, int]] = {
    1: (7, 17), 18: (18, 24), 25: (25, 34), 35: (35, 44), 45: (45, 49), 50: (50, 55), 56: (56, 73),
}  # fmt: skip
_BEIJING = datetime.timezone(datetime.timedelta(hours=8))
_KUAIRAND_START = datetime.datetime(2022, 4, 8, tzinfo=_BEIJING)
_KUAIRAND_SECOND_FILE = datetime.datetime(2022, 4, 22, tzinfo=_BEIJING)
_KUAIRAND_DAYS = 31
_MOVIELENS_START = 956_703_932  # the first MovieLens 1M timestamp (2000-04-25)
_MOVIELENS_DAYS = 1_000
_CLICK, _UNCLICK, _DISLIKE = (FEEDBACK_TYPES.index(n) for n in ("click", "unclick", "dislike"))


def kuairand_config(num_impressions: int, seed: int = 0, **overrides: Any) -> SimulatorConfig:
    """Simulator settings for a KuaiRand-like log of `num_impressions` rows (before duplicates).

    About 40 impressions per user (1,500 users per 60k rows, at least 300), 8
    age groups (one per `user_active_degree`), a dislike rate of about 0.7% of
    impressions (the published logs: well under 1%) and the simulator's
    defaults otherwise (about 28% clicks); `overrides` replace any setting.
    """
    num_users = max(300, num_impressions // 40)
    settings: dict[str, Any] = {
        "seed": seed,
        "num_impressions": num_impressions,
        "num_users": num_users,
        "num_items": max(300, min(5_000, num_impressions // 40)),
        "users_per_round": max(1, num_users // 5),
        "num_age_groups": len(ACTIVE_DEGREES),
        "dislike_rate": 0.01,
    }
    settings.update(overrides)
    return SimulatorConfig(**settings)


def movielens_config(num_impressions: int, seed: int = 0, **overrides: Any) -> SimulatorConfig:
    """Simulator settings for a MovieLens-like log of `num_impressions` ratings (before dropping repeats).

    About 65 impressions per user (MovieLens 100K: 943 users, 1,682 movies), the
    7 1M age groups, 18 categories (one per genre), a flatter popularity (fewer
    repeated (user, movie) pairs to drop: 8% of 60k impressions), and a bias
    and dislike rate that give about 51% clicks (ratings 4-5), 32% unclicks (3)
    and 17% dislikes (1-2), near MovieLens 1M's 57 / 26 / 16. Users are spread
    over the whole period (the simulator draws every round's users by activity),
    unlike real MovieLens users, who rate in bursts. `overrides` replace any
    setting.
    """
    num_users = max(200, num_impressions // 65)
    settings: dict[str, Any] = {
        "seed": seed,
        "num_impressions": num_impressions,
        "num_users": num_users,
        "num_items": max(300, min(4_000, int(num_users * 1.8))),
        "users_per_round": max(1, num_users // 6),
        "num_age_groups": len(AGE_GROUPS),
        "num_categories": len(MOVIELENS_GENRES),
        "num_authors": 200,
        "popularity_exponent": 0.5,
        "bias": -1.0,
        "dislike_rate": 0.35,
    }
    settings.update(overrides)
    return SimulatorConfig(**settings)


def _times_in_slots(
    rounds: np.ndarray, num_rounds: int, span: int, rng: np.random.Generator
) -> np.ndarray:
    """A uniform integer time inside each row's round slot (slots split `[0, span)` evenly)."""
    slot = span / num_rounds
    return np.floor((rounds + rng.random(rounds.size)) * slot).astype(np.int64)


def _bucket(value: int, ranges: Sequence[tuple[int, str]], top: str) -> str:
    for upper, name in ranges:
        if value <= upper:
            return name
    return top


def _write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _simulate(config: SimulatorConfig) -> dict[str, np.ndarray]:
    wanted = ("user_id", "item_id", "item_category", "item_author", "item_duration", "label")
    columns = simulate(config)
    out = {k: columns[k] for k in (*wanted, "feedback", "round", "user_region", "user_age_group")}
    del columns  # the [n, L] sequences are not needed: the loaders rebuild them from the log
    return out


def _per_user_attribute(users: np.ndarray, values: np.ndarray, num_users: int) -> np.ndarray:
    """A user attribute as a `[num_users]` array (users never shown anything get a random one)."""
    out = np.full(num_users, -1, dtype=np.int64)
    out[users] = values
    return out


def write_kuairand(
    out_dir: str | os.PathLike,
    config: SimulatorConfig,
    *,
    duplicate_fraction: float = 0.002,
) -> dict[str, Any]:
    """Simulates a feed and writes it as SYNTHETIC KuaiRand files (see the module docstring).

    Args:
        out_dir: folder to write (created if needed).
        config: simulator settings, e.g. `kuairand_config(60_000)`.
        duplicate_fraction: share of log rows written twice (exact duplicates).

    Returns:
        `{"synthetic": True, "layout": "kuairand", "files": {...}, "rows": written
        log rows, "duplicates": rows written twice, "feedback_counts": {...},
        "simulator": settings}`.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng([config.seed, 1])
    sim = _simulate(config)
    n = sim["label"].size
    users, items = sim["user_id"], sim["item_id"]
    feedback = sim["feedback"]

    # ------------------------------------------------------------------ log rows
    start_ms = int(_KUAIRAND_START.timestamp() * 1000)
    offsets = _times_in_slots(sim["round"], config.num_rounds, _KUAIRAND_DAYS * 86_400_000, rng)
    order = np.argsort(offsets, kind="stable")
    time_ms = start_ms + offsets
    duration_ms = np.rint(sim["item_duration"].astype(np.float64) * 1000).astype(np.int64)
    click = sim["label"].astype(np.int64)
    hate = (feedback == _DISLIKE).astype(np.int64)
    draws = rng.random((n, 6))
    like = click & (draws[:, 0] < 0.08)
    follow = click & (draws[:, 1] < 0.01)
    comment = click & (draws[:, 2] < 0.01)
    forward = click & (draws[:, 3] < 0.005)
    watched = np.where(click == 1, rng.uniform(0.3, 1.6, n), rng.uniform(0.0, 0.2, n))
    play_ms = np.rint(duration_ms * watched).astype(np.int64)
    long_view = (play_ms >= np.minimum(duration_ms, 18_000)).astype(np.int64)
    profile = (draws[:, 4] < 0.02).astype(np.int64)
    profile_stay = np.where(profile == 1, rng.integers(1_000, 60_000, n), 0)
    comment_stay = np.where(comment == 1, rng.integers(1_000, 90_000, n), 0)
    tab = rng.choice([0, 1, 2, 4], size=n, p=[0.15, 0.7, 0.1, 0.05])
    duplicate = draws[:, 5] < duplicate_fraction

    second_file_ms = int(_KUAIRAND_SECOND_FILE.timestamp() * 1000)
    files = {
        "logs": [
            os.path.join(out_dir, "log_standard_4_08_to_4_21_synthetic.csv"),
            os.path.join(out_dir, "log_standard_4_22_to_5_08_synthetic.csv"),
        ],
        "users": os.path.join(out_dir, "user_features_synthetic.csv"),
        "videos": os.path.join(out_dir, "video_features_basic_synthetic.csv"),
    }
    local_seconds = time_ms // 1000 + 8 * 3600  # Beijing time
    day, second_of_day = np.divmod(local_seconds, 86_400)
    epoch = datetime.date(1970, 1, 1)
    yyyymmdd = {
        d: int((epoch + datetime.timedelta(days=int(d))).strftime("%Y%m%d")) for d in np.unique(day)
    }
    hourmin = second_of_day // 3600 * 100
    parts: list[list[list[Any]]] = [[], []]
    for j in order.tolist():
        t = int(time_ms[j])
        row = [
            int(users[j]), int(items[j]), yyyymmdd[day[j]], int(hourmin[j]), t,
            int(click[j]), int(like[j]), int(follow[j]), int(comment[j]), int(forward[j]),
            int(hate[j]), int(long_view[j]), int(play_ms[j]), int(duration_ms[j]),
            int(profile_stay[j]), int(comment_stay[j]), int(profile[j]), 0, int(tab[j]),
        ]  # fmt: skip
        part = parts[int(t >= second_file_ms)]
        part.append(row)
        if duplicate[j]:
            part.append(list(row))
    for path, rows in zip(files["logs"], parts, strict=True):
        _write_csv(path, KUAIRAND_LOG_HEADER, rows)

    # ------------------------------------------------------------------ users
    age = _per_user_attribute(users, sim["user_age_group"], config.num_users)
    region = _per_user_attribute(users, sim["user_region"], config.num_users)
    unseen = age < 0
    age[unseen] = rng.integers(0, config.num_age_groups, int(unseen.sum()))
    region[unseen] = rng.integers(0, config.num_regions, int(unseen.sum()))
    user_rows = []
    onehot_sizes = (2, config.num_regions, 9, 2, 20, 3, 2, 2, 4, 6, 8, 4, 5, 3, 2, 2, 2, 2)
    for u in range(config.num_users):
        follow_n = int(rng.lognormal(3.0, 1.5))
        fans_n = int(rng.lognormal(2.0, 2.0))
        friend_n = int(rng.lognormal(1.5, 1.3))
        register = int(rng.integers(15, 2_500))
        onehot: list[Any] = []
        for i, size in enumerate(onehot_sizes):
            code = int(region[u]) if i == 1 else int(rng.integers(0, size))
            if i >= 5 and rng.random() < 0.01:
                onehot.append("")  # empty cells occur
            else:
                onehot.append(f"{code}.0" if i >= 9 else code)
        user_rows.append(
            [
                u,
                ACTIVE_DEGREES[int(age[u]) % len(ACTIVE_DEGREES)],
                int(rng.random() < 0.1),
                int(rng.random() < 0.05),
                int(rng.random() < 0.3),
                follow_n,
                _bucket(follow_n, _FOLLOW_RANGES, "500+"),
                fans_n,
                _bucket(fans_n, _FANS_RANGES, "[1w,10w)"),
                friend_n,
                _bucket(friend_n, _FRIEND_RANGES, "250+"),
                register,
                _bucket(register, _REGISTER_RANGES, "730+"),
                *onehot,
            ]
        )
    _write_csv(files["users"], KUAIRAND_USER_HEADER, user_rows)

    # ------------------------------------------------------------------ videos
    category = np.full(config.num_items, -1, dtype=np.int64)
    author = np.full(config.num_items, -1, dtype=np.int64)
    duration = np.full(config.num_items, math.nan)
    category[items] = sim["item_category"]
    author[items] = sim["item_author"]
    duration[items] = sim["item_duration"]
    never = category < 0  # items never shown: attributes drawn like the simulator's
    category[never] = rng.integers(0, config.num_categories, int(never.sum()))
    author[never] = rng.integers(0, config.num_authors, int(never.sum()))
    duration[never] = np.exp(rng.normal(math.log(90.0), 0.6, int(never.sum())))
    start_day = _KUAIRAND_START.date()
    video_rows = []
    for v in range(config.num_items):
        tag = str(int(category[v]))
        if rng.random() < 0.2:  # a second tag, written "first,second" (quoted by csv)
            tag += f",{int(rng.integers(0, config.num_categories))}"
        upload = start_day - datetime.timedelta(days=int(rng.integers(0, 120)))
        video_rows.append(
            [
                v,
                1_000_000 + 7 * int(author[v]),
                "AD" if rng.random() < 0.03 else "NORMAL",
                "" if rng.random() < 0.01 else upload.isoformat(),
                UPLOAD_TYPES[int(rng.integers(0, len(UPLOAD_TYPES)))],
                "0.0",
                "" if rng.random() < 0.01 else f"{round(duration[v] * 1000.0)}.0",
                "720.0",
                "1280.0" if rng.random() < 0.9 else "720.0",
                int(rng.integers(1_000_000_000, 9_999_999_999)),
                "" if rng.random() < 0.02 else f"{int(rng.choice([4, 8, 9, 11]))}.0",
                tag,
            ]
        )
    _write_csv(files["videos"], KUAIRAND_VIDEO_HEADER, video_rows)

    counts = np.bincount(feedback, minlength=len(FEEDBACK_TYPES))
    return {
        "synthetic": True,
        "layout": "kuairand",
        "files": files,
        "rows": int(n + duplicate.sum()),
        "duplicates": int(duplicate.sum()),
        "feedback_counts": {k: int(c) for k, c in zip(FEEDBACK_TYPES, counts, strict=True)},
        "simulator": dataclasses.asdict(config),
    }


def _rating(feedback: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ratings of feedback codes: click 4-5, unclick 3, dislike 1-2."""
    high = rng.random(feedback.size) < 0.4
    return np.select(
        [feedback == _CLICK, feedback == _UNCLICK],
        [np.where(high, 5, 4), 3],
        default=np.where(high, 1, 2),
    ).astype(np.int64)


_TITLE_WORDS: tuple[str, ...] = (
    "Night", "River", "Garden", "Stranger", "Return", "City", "Summer", "Café", "Señor",
    "Déjà", "Island", "Letter", "Storm", "King", "Doctor", "Road", "Blue", "Heart",
)  # fmt: skip


def write_movielens(
    out_dir: str | os.PathLike, config: SimulatorConfig, *, layout: str = "1m"
) -> dict[str, Any]:
    """Simulates ratings and writes them as SYNTHETIC MovieLens files (see the module docstring).

    Args:
        out_dir: folder to write (created if needed).
        config: simulator settings, e.g. `movielens_config(60_000)`; needs
            `num_age_groups <= 7` and `num_categories <= 18`.
        layout: `"100k"` (`u.data`, `u.user`, `u.item`) or `"1m"` (`ratings.dat`,
            `users.dat`, `movies.dat`).

    Returns:
        `{"synthetic": True, "layout": ..., "files": {...}, "rows": ratings written,
        "repeats_dropped": repeated (user, movie) impressions not written,
        "feedback_counts": {...} of the ratings written, "simulator": settings}`.
    """
    if layout not in ("100k", "1m"):
        raise ValueError(f"layout must be '100k' or '1m'. Received: layout={layout!r}")
    if config.num_age_groups > len(AGE_GROUPS) or config.num_categories > len(MOVIELENS_GENRES):
        raise ValueError(
            f"MovieLens needs num_age_groups <= {len(AGE_GROUPS)} and num_categories <= "
            f"{len(MOVIELENS_GENRES)}; use movielens_config(). Received: {config.num_age_groups}, "
            f"{config.num_categories}"
        )
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng([config.seed, 2])
    sim = _simulate(config)
    users, items, feedback = sim["user_id"], sim["item_id"], sim["feedback"]

    # A user rates a movie once: keep each (user, movie) pair's first impression.
    pair = users.astype(np.int64) * config.num_items + items
    _, first = np.unique(pair, return_index=True)
    keep = np.zeros(pair.size, dtype=bool)
    keep[first] = True
    repeats = int(pair.size - keep.sum())
    stamp = _MOVIELENS_START + _times_in_slots(
        sim["round"], config.num_rounds, _MOVIELENS_DAYS * 86_400, rng
    )
    rating = _rating(feedback, rng)
    users, items, feedback, rating, stamp = (
        a[keep] for a in (users, items, feedback, rating, stamp)
    )
    if layout == "100k":  # u.data is in no particular order
        order = rng.permutation(users.size)
    else:  # ratings.dat is grouped by user, not in time order within a user
        order = np.lexsort((rng.random(users.size), users))
    names = (
        {"ratings": "u.data", "users": "u.user", "items": "u.item"}
        if layout == "100k"
        else {"ratings": "ratings.dat", "users": "users.dat", "items": "movies.dat"}
    )
    files = {role: os.path.join(out_dir, name) for role, name in names.items()}
    sep = "\t" if layout == "100k" else "::"
    with open(files["ratings"], "w", encoding="latin-1", newline="") as f:
        f.writelines(
            f"{u}{sep}{i + 1}{sep}{r}{sep}{t}\n"
            for u, i, r, t in zip(
                (users[order] + 1).tolist(),
                items[order].tolist(),
                rating[order].tolist(),
                stamp[order].tolist(),
                strict=True,
            )
        )

    # ------------------------------------------------------------------ users (ids from 1)
    age = _per_user_attribute(sim["user_id"], sim["user_age_group"], config.num_users)
    region = _per_user_attribute(sim["user_id"], sim["user_region"], config.num_users)
    unseen = age < 0
    age[unseen] = rng.integers(0, config.num_age_groups, int(unseen.sum()))
    region[unseen] = rng.integers(0, config.num_regions, int(unseen.sum()))
    lines = []
    for u in range(config.num_users):
        group = AGE_GROUPS[int(age[u])]
        gender = "M" if rng.random() < 0.7 else "F"
        zip_code = f"{(int(region[u]) * 97 + 11) % 1000:03d}{int(rng.integers(0, 100)):02d}"
        code = int(rng.integers(0, len(OCCUPATIONS_1M)))
        if layout == "100k":
            years = int(rng.integers(_AGE_RANGES[group][0], _AGE_RANGES[group][1] + 1))
            lines.append(f"{u + 1}|{years}|{gender}|{OCCUPATIONS_100K[code]}|{zip_code}\n")
        else:
            lines.append(f"{u + 1}::{gender}::{group}::{code}::{zip_code}\n")
    with open(files["users"], "w", encoding="latin-1", newline="") as f:
        f.writelines(lines)

    # ------------------------------------------------------------------ movies (ids from 1)
    category = np.full(config.num_items, -1, dtype=np.int64)
    category[sim["item_id"]] = sim["item_category"]
    never = category < 0
    category[never] = rng.integers(0, config.num_categories, int(never.sum()))
    lines = []
    for m in range(config.num_items):
        genres = [int(category[m])]
        if rng.random() < 0.4:  # a second genre, listed after the first (100K: a later flag)
            extra = int(rng.integers(0, len(MOVIELENS_GENRES)))
            if extra > genres[0] or (layout == "1m" and extra != genres[0]):
                genres.append(extra)
        words = rng.choice(len(_TITLE_WORDS), size=2, replace=False)
        title = f"{_TITLE_WORDS[words[0]]} {_TITLE_WORDS[words[1]]} {m + 1}"
        year = int(rng.integers(1930, 2001)) if rng.random() > 0.01 else None
        if layout == "100k":
            flags = ["0"] * len(GENRES_100K)
            for g in genres:
                flags[g + 1] = "1"
            date = f"01-Jan-{year}" if year else ""
            full = f"{title} ({year})" if year else title
            url = "http://us.imdb.com/M/title-exact?" + full.replace(" ", "%20")
            lines.append(f"{m + 1}|{full}|{date}||{url}|{'|'.join(flags)}\n")
        else:
            full = f"{title} ({year})" if year else title
            lines.append(f"{m + 1}::{full}::{'|'.join(MOVIELENS_GENRES[g] for g in genres)}\n")
    with open(files["items"], "w", encoding="latin-1", newline="") as f:
        f.writelines(lines)

    counts = np.bincount(feedback, minlength=len(FEEDBACK_TYPES))
    return {
        "synthetic": True,
        "layout": f"movielens-{layout}",
        "files": files,
        "rows": int(users.size),
        "repeats_dropped": repeats,
        "feedback_counts": {k: int(c) for k, c in zip(FEEDBACK_TYPES, counts, strict=True)},
        "simulator": dataclasses.asdict(config),
    }


def main() -> None:
    """Writes one synthetic log from the command line (the ladder's movie-layout world, for one)."""
    import argparse
    import json

    from well_specified import simulator_overrides

    parser = argparse.ArgumentParser(description="Writes a SYNTHETIC KuaiRand or MovieLens log.")
    parser.add_argument("layout", choices=["kuairand", "movielens-100k", "movielens-1m"])
    parser.add_argument("out", help="folder to write the files into")
    parser.add_argument("--impressions", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument(
        "--sim",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="simulator setting override (repeatable), e.g. --sim num_users=600",
    )
    args = parser.parse_args()
    overrides = simulator_overrides(args.sim)
    if args.layout == "kuairand":
        result = write_kuairand(args.out, kuairand_config(args.impressions, args.seed, **overrides))
    else:
        config = movielens_config(args.impressions, args.seed, **overrides)
        result = write_movielens(args.out, config, layout=args.layout.split("-")[1])
    print(json.dumps({k: v for k, v in result.items() if k != "simulator"}, indent=2))


if __name__ == "__main__":
    main()
