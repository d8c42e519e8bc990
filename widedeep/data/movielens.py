"""MovieLens 100K / 1M ratings to a dataset directory.

`prepare_movielens` reads a MovieLens folder, detecting the layout:

* 100K: `u.data` (`user item rating timestamp`, tab-separated), `u.user`
  (`user|age|gender|occupation|zip`) and `u.item`
  (`movie|title|release date|video release date|IMDb URL|19 genre flags`);
* 1M: `ratings.dat` (`UserID::MovieID::Rating::Timestamp`), `users.dat`
  (`UserID::Gender::Age::Occupation::Zip-code`) and `movies.dat`
  (`MovieID::Title::Genres`, genres `|`-separated).

Every file is read as latin-1 (the titles are). Each rating is an impression:
rating >= 4 is a `click` (label 1), 3 an `unclick`, <= 2 a `dislike` (label 0).

Order. `u.data` is not in time order and `ratings.dat` is sorted by user; the
engine (`widedeep.data.prepare`) sorts the ratings stably by timestamp, ties
keeping file order. See `widedeep.data.source` for the shared policies on
ties, duplicates, the split and bad rows.

Features:

* ids: `user_id`, `movie_id` (train vocabularies, OOV for unseen), embedded.
* user: `gender`, `age` (the 1M age groups 1, 18, 25, 35, 45, 50, 56; 100K ages
  are mapped to them so both layouts share a schema), `occupation` (a name; the
  1M codes are mapped to the names of its README), `zip3` (the first three
  characters of the zip code).
* movie: `genre` (the first listed genre), `release_year` (numeric: standardised
  for deep, train quantile buckets for wide; a missing year is imputed with the
  median over the movie file and counted in `meta["imputed"]`).
* wide crosses: `gender x genre`, `age x genre`, `occupation x genre`.
* sequences `click`, `unclick`, `dislike` over `(movie_id, genre)`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import polars as pl

from widedeep.data.log_reading import (
    BadRows,
    first_rows,
    line_blocks,
    parse_columns,
    parse_integer_columns,
    read_delimited,
    report_bad_rows,
    report_side_table_rows,
    row_hash,
)
from widedeep.data.prepare import prepare_source
from widedeep.data.source import (
    CLICK,
    DISLIKE,
    UNCLICK,
    ErrorPolicy,
    FeatureTable,
    FeedbackLogError,
    FeedbackSource,
    Impressions,
    PrepareOptions,
    TrainStatistics,
    categorical_feature,
    cross_feature,
    numeric_feature,
)
from widedeep.schema import MISSING_STRING, Schema

__all__ = ["prepare_movielens", "detect_layout", "MovieLensSource", "feedback_of_rating"]

LAYOUTS: dict[str, dict[str, str]] = {
    "100k": {"ratings": "u.data", "users": "u.user", "items": "u.item", "separator": "\t"},
    "1m": {
        "ratings": "ratings.dat",
        "users": "users.dat",
        "items": "movies.dat",
        "separator": "::",
    },
}

GENRES_100K: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
"""The 19 genre flags of `u.item`, in column order (as listed in `u.genre`)."""

OCCUPATIONS_1M: tuple[str, ...] = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
"""Occupation names of the 1M codes 0..20 (MovieLens 1M README)."""

AGE_GROUPS: tuple[int, ...] = (1, 18, 25, 35, 45, 50, 56)
"""The 1M age groups: under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+."""

ITEM_FEATURES: tuple[str, ...] = ("movie_id", "genre")
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def feedback_of_rating(rating: int) -> tuple[int, int]:
    """`(feedback code, label)` of a rating: >= 4 click (1), 3 unclick (0), <= 2 dislike (0)."""
    if rating >= 4:
        return CLICK, 1
    if rating == 3:
        return UNCLICK, 0
    return DISLIKE, 0


def age_group(age: int) -> int:
    """The 1M age group (its lower bound) of an age in years."""
    group = AGE_GROUPS[0]
    for bound in AGE_GROUPS[1:]:
        if age >= bound:
            group = bound
    return group


def detect_layout(path: str | os.PathLike) -> str:
    """`"100k"` or `"1m"`, from the ratings file found in the folder `path`."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FeedbackLogError(f"movielens: no such directory: {path}")
    found = [
        name
        for name, files in LAYOUTS.items()
        if os.path.isfile(os.path.join(path, files["ratings"]))
    ]
    if not found:
        raise FeedbackLogError(
            f"movielens: {path} holds neither u.data (MovieLens 100K) nor ratings.dat (MovieLens 1M)"
        )
    if len(found) > 1:
        raise FeedbackLogError(
            f"movielens: {path} holds both u.data and ratings.dat; point at one layout"
        )
    layout = found[0]
    for role in ("users", "items"):
        file = os.path.join(path, LAYOUTS[layout][role])
        if not os.path.isfile(file):
            raise FeedbackLogError(f"movielens {layout}: missing file {file}")
    return layout


def _delimited_frame(
    path: str, separator: str, names: Sequence[str], *, join_middle: bool = False
) -> tuple[pl.DataFrame, BadRows]:
    """A headerless side file's rows as string columns `names` and `_line`; ragged rows are bad.

    With `join_middle`, a row with too many fields keeps its first and last and joins
    the ones between (a title holding the separator).
    """
    lines, rows, bad = [], [], []
    for line, fields in read_delimited(path, separator):
        if join_middle and len(fields) > len(names):
            fields = [fields[0], separator.join(fields[1:-1]), fields[-1]]
        if len(fields) != len(names):
            bad.append(
                (
                    line,
                    f"expected {len(names)} fields separated by {separator!r}, found {len(fields)}",
                )
            )
            continue
        lines.append(line)
        rows.append(fields)
    columns = {name: [row[j] for row in rows] for j, name in enumerate(names)}
    schema = {"_line": pl.Int64, **dict.fromkeys(names, pl.String)}
    return pl.DataFrame({"_line": lines, **columns}, schema=schema), bad


def _rejected(
    frame: pl.DataFrame, wrong: pl.Expr, message: Callable[[dict[str, Any]], str]
) -> tuple[pl.DataFrame, BadRows]:
    """The rows where `wrong` is false, and the others as bad rows with their `message(row)`."""
    bad = [
        (row["_line"], f"unreadable value: {message(row)}")
        for row in frame.filter(wrong).iter_rows(named=True)
    ]
    return frame.filter(~wrong), bad


def _good_rows(checked: tuple[pl.DataFrame, BadRows], bad: BadRows) -> pl.DataFrame:
    """The rows that passed a check; its bad rows are added to `bad`."""
    frame, rejected = checked
    bad += rejected
    return frame


class MovieLensSource(FeedbackSource):
    """A MovieLens 100K or 1M folder as a `FeedbackSource` (the ratings are read when `impressions` is called).

    Args:
        path: the folder.
        policy: receives malformed rows of the side files (read here).
    """

    name = "movielens"
    user_column = "user_id"
    item_features = ITEM_FEATURES
    context_columns: dict[str, str] = {}

    def __init__(self, path: str | os.PathLike, policy: ErrorPolicy) -> None:
        self.path = os.fspath(path)
        self.layout = detect_layout(self.path)
        files = LAYOUTS[self.layout]
        self.files = {
            role: os.path.join(self.path, files[role]) for role in ("ratings", "users", "items")
        }
        self.separator = files["separator"]
        self.logs = [self.files["ratings"]]
        self.users = self._read_users(policy)
        self.items = self._read_items(policy)

    # ------------------------------------------------------------------ side tables
    def _read_users(self, policy: ErrorPolicy) -> FeatureTable:
        path = self.files["users"]
        sep = "|" if self.layout == "100k" else "::"
        if self.layout == "100k":
            names = ("user", "age", "gender", "occupation", "zip")
        else:
            names = ("user", "gender", "age", "occupation", "zip")
        frame, bad = _delimited_frame(path, sep, names)
        frame = frame.with_columns(age_text="age", occupation_text="occupation")
        # Check by check, each on the rows that passed the ones before: a row is named
        # for its first problem.
        frame = _good_rows(parse_columns(frame, {"age": "int"}), bad)
        if self.layout == "1m":
            wrong_age = ~pl.col("age").is_in(AGE_GROUPS)
            frame = _good_rows(
                _rejected(
                    frame,
                    wrong_age,
                    lambda r: f"age {r['age_text']!r} is not a 1M age group {AGE_GROUPS}",
                ),
                bad,
            )
            frame = _good_rows(parse_columns(frame, {"occupation": "int"}), bad)
            last = len(OCCUPATIONS_1M) - 1
            frame = _good_rows(
                _rejected(
                    frame,
                    ~pl.col("occupation").is_between(0, last),
                    lambda r: f"occupation code {r['occupation_text']!r} is not in 0..{last}",
                ),
                bad,
            )
        frame = _good_rows(parse_columns(frame, {"user": "int"}), bad)
        frame, repeated = first_rows(frame, "user", "user")
        report_side_table_rows(policy, path, bad, repeated)
        if self.layout == "100k":
            ages = [age_group(a) for a in frame["age"].to_list()]
            occupations = frame["occupation"].to_list()
        else:
            ages = frame["age"].to_list()
            occupations = [OCCUPATIONS_1M[code] for code in frame["occupation"].to_list()]
        columns = {
            "gender": [g.strip() for g in frame["gender"].to_list()],
            "age": ages,
            "occupation": [o.strip() for o in occupations],
            "zip3": [z.strip()[:3] for z in frame["zip"].to_list()],
        }
        dtypes = {"gender": "string", "age": "int64", "occupation": "string", "zip3": "string"}
        return FeatureTable("users", path, frame["user"].to_list(), columns, dtypes)

    def _read_items(self, policy: ErrorPolicy) -> FeatureTable:
        path = self.files["items"]
        sep = "|" if self.layout == "100k" else "::"
        flags = [f"{g} flag" for g in GENRES_100K]
        if self.layout == "100k":
            names = ("movie", "title", "date", "video_date", "url", *flags)
            kinds = {"movie": "int", **dict.fromkeys(flags, "int")}
        else:
            names, kinds = ("movie", "title", "genres"), {"movie": "int"}
        # A 1M title may hold the separator: the fields between the first and the last.
        frame, bad = _delimited_frame(path, sep, names, join_middle=self.layout == "1m")
        frame = _good_rows(parse_columns(frame, kinds), bad)
        lines, movies, genres, years = [], [], [], []
        for row in frame.iter_rows(named=True):
            try:
                if self.layout == "100k":
                    genre = next(
                        (g for g, f in zip(GENRES_100K, flags, strict=True) if row[f]),
                        MISSING_STRING,
                    )
                    date = row["date"].strip()
                    year = float(date[-4:]) if date else math.nan
                else:
                    genre = row["genres"].strip().split("|")[0]
                    match = _YEAR_IN_TITLE.search(row["title"])
                    year = float(match.group(1)) if match else math.nan
            except ValueError as e:
                bad.append((row["_line"], f"unreadable value: {e}"))
                continue
            lines.append(row["_line"])
            movies.append(row["movie"])
            genres.append(genre)
            years.append(year)
        frame = pl.DataFrame(
            {"_line": lines, "movie": movies, "genre": genres, "release_year": years},
            schema={
                "_line": pl.Int64,
                "movie": pl.Int64,
                "genre": pl.String,
                "release_year": pl.Float64,
            },
        )
        frame, repeated = first_rows(frame, "movie", "movie")
        report_side_table_rows(policy, path, bad, repeated)
        movie = frame["movie"].to_list()
        columns = {
            "movie_id": movie,
            "genre": frame["genre"].to_list(),
            "release_year": frame["release_year"].to_list(),
        }
        dtypes = {"movie_id": "int64", "genre": "string", "release_year": "float32"}
        return FeatureTable("movies", path, movie, columns, dtypes)

    # ------------------------------------------------------------------------ events
    def impressions(self, policy: ErrorPolicy, batch_rows: int) -> Iterator[Impressions]:
        path = self.files["ratings"]
        for block, first_line, _ in line_blocks(path, batch_rows * 32, header=False):
            yield self._block_impressions(block, first_line, policy)

    def _block_impressions(self, block: bytes, first_line: int, policy: ErrorPolicy) -> Impressions:
        path, sep = self.files["ratings"], self.separator
        names = ("user", "item", "rating", "time")
        lines = pl.read_lines(
            block.decode("latin-1").encode(), row_index_name="_line", row_index_offset=first_line
        ).filter(pl.col("line").str.strip_chars() != "")
        parts = lines.select(
            pl.col("_line").cast(pl.Int64),
            pl.col("line").str.strip_chars_end("\r\n").str.split(sep, literal=True).alias("parts"),
        ).with_columns(n=pl.col("parts").list.len())
        ragged = parts.filter(pl.col("n") != 4)
        bad = [
            (line, f"expected 4 fields separated by {sep!r}, found {n}")
            for line, n in zip(ragged["_line"].to_list(), ragged["n"].to_list(), strict=True)
        ]
        fields = parts.filter(pl.col("n") == 4).select(
            "_line", *(pl.col("parts").list.get(k).alias(name) for k, name in enumerate(names))
        )
        frame, unparsed = parse_integer_columns(fields, names)
        out_of_range = frame.filter(~pl.col("rating").is_between(1, 5))
        bad += unparsed + [
            (line, f"unreadable value: rating {r} is not in 1..5")
            for line, r in zip(
                out_of_range["_line"].to_list(), out_of_range["rating"].to_list(), strict=True
            )
        ]
        report_bad_rows(policy, path, bad)
        frame = frame.filter(pl.col("rating").is_between(1, 5))
        rating = frame["rating"].to_numpy()
        return Impressions(
            time=frame["time"].to_numpy(),
            user=frame["user"].to_numpy(),
            item=frame["item"].to_numpy(),
            feedback=np.where(rating >= 4, CLICK, np.where(rating == 3, UNCLICK, DISLIKE)),
            label=(rating >= 4).astype(np.int64),
            file_index=np.zeros(len(frame), dtype=np.int64),
            line=frame["_line"].to_numpy(),
            row_key=frame.select(row_hash(names)).to_series().to_numpy(),
        )

    # ------------------------------------------------------------------------ schema
    def build_schema(self, stats: TrainStatistics, max_length: int) -> Schema:
        def cat(name: str, dtype: str, dim: int, wide: bool = True):
            return categorical_feature(stats, name, dtype, embedding_dim=dim, wide=wide)

        categorical = [
            cat("user_id", "int64", 16, wide=False),
            cat("movie_id", "int64", 16, wide=False),
            cat("genre", "string", 8),
            cat("gender", "string", 4),
            cat("age", "int64", 4),
            cat("occupation", "string", 8),
            cat("zip3", "string", 8),
        ]
        by_name = {f.name: f for f in categorical}
        genre = by_name["genre"]
        crosses = [
            cross_feature(f"{name}_x_genre", [by_name[name], genre])
            for name in ("gender", "age", "occupation")
        ]
        numeric = [numeric_feature(stats, "release_year")]
        return self.feedback_schema(categorical, numeric, max_length, crosses)

    def describe(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "files": dict(self.files),
            "feedback_rule": "rating >= 4 click (label 1), 3 unclick (0), <= 2 dislike (0)",
        }


def prepare_movielens(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    **options: Any,
) -> dict[str, Any]:
    """Writes a MovieLens (100K or 1M, auto-detected) dataset directory.

    Args:
        path: folder holding `u.data`, `u.user`, `u.item` (100K) or `ratings.dat`,
            `users.dat`, `movies.dat` (1M).
        out_dir: the dataset directory to write.
        **options: any field of `PrepareOptions` (e.g. `max_length`, `split_by`,
            `on_error`); its docstring gives each one's meaning and default.

    Returns:
        The dataset's meta (also written to `out_dir/meta.json`).

    Raises:
        FeedbackLogError: (a `DatasetError`) for a missing folder or file, or with
            `on_error="stop"` a bad row, naming file and line.

    Example:

    ```python
    meta = prepare_movielens("ml-1m", "data/ml-1m", split_by="user")
    ```
    """
    return prepare_source(
        lambda policy: MovieLensSource(path, policy), out_dir, PrepareOptions(**options)
    )
