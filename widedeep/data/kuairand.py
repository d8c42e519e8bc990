"""KuaiRand (Kuaishou short-video logs) to a dataset directory.

`prepare_kuairand` reads one or more interaction logs (`log_standard_*.csv`,
`log_random_*.csv`), the user features (`user_features_*.csv`) and the basic
video features (`video_features_basic_*.csv`) and writes one row per
impression (see `widedeep.data.source` for the shared policies on ties,
duplicates, the split and bad rows).

Feedback. `label = is_click`. The feedback *type*, which chooses the sequence
the impression joins and its DFN loss weight, is `dislike` when `is_hate == 1`
(whether or not it was clicked: an explicit "not interested" is the stronger
signal), otherwise `click` when `is_click == 1`, otherwise `unclick`. A disliked
impression that was clicked therefore has label 1 and type `dislike`.

Order. The logs may come in any order: rows are sorted by `time_ms`, ties by
the order the files were given, then by line (see `widedeep.data.prepare`).

Features (everything a model may see at impression time; the outcome columns
`is_like`, `long_view`, `play_time_ms`, ... never are, nor any statistic of the
log):

* ids: `user_id`, `video_id` (train vocabularies, OOV for unseen; hashed above
  `MAX_VOCABULARY_SIZE`), `author_id` (hashed), all embedded and all wide: on
  the real log the ids carry most of the signal (item popularity alone beats a
  wide branch without them), and the wide branch memorises them best.
* user categoricals: `user_active_degree`, `is_lowactive_period`,
  `is_live_streamer`, `is_video_author`, the four `*_range` buckets and the 18
  anonymised `onehot_feat*` codes (small categorical codes, written as floats in
  the file, read as integers; empty cells are missing).
* video categoricals: `video_type`, `upload_type`, `music_type`, `tag` (the
  first of the comma-separated tags).
* context: `hour` (from `hourmin`, `HHMM`) and `tab` (the app tab the impression
  was shown in: known at serving time, and one of the strongest features).
* numeric (standardised for deep, train quantile buckets for wide):
  `log_follow_user_num`, `log_fans_user_num`, `log_friend_user_num`,
  `log_register_days` and `log_duration` (`log1p` of the counts, the days and
  the video duration in seconds: heavy tails) and `video_age_days` (impression
  date minus `upload_dt`, clipped at 0). Missing side values are imputed with the
  side table's median (counted in `meta["imputed"]`).
* wide crosses: `user_active_degree x tag`, `user_active_degree x video_type`,
  `hour x tag`.
* sequences `click`, `unclick`, `dislike` over `(video_id, author_id, tag)`.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import polars as pl

from widedeep.data.log_reading import (
    first_rows,
    parse_columns,
    read_log,
    read_log_batches,
    report_bad_rows,
    report_side_table_rows,
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
from widedeep.schema import Schema

__all__ = ["prepare_kuairand", "KuaiRandSource", "LOG_COLUMNS", "USER_COLUMNS", "VIDEO_COLUMNS"]

LOG_COLUMNS: tuple[str, ...] = (
    "user_id",
    "video_id",
    "date",
    "hourmin",
    "time_ms",
    "is_click",
    "is_hate",
    "tab",
)
"""Log columns the loader reads; the others (outcomes such as `play_time_ms`) are never features."""

ONEHOT_FEATURES: tuple[str, ...] = tuple(f"onehot_feat{i}" for i in range(18))
USER_CATEGORICAL_INT: tuple[str, ...] = (
    "is_lowactive_period",
    "is_live_streamer",
    "is_video_author",
    *ONEHOT_FEATURES,
)
USER_CATEGORICAL_STRING: tuple[str, ...] = (
    "user_active_degree",
    "follow_user_num_range",
    "fans_user_num_range",
    "friend_user_num_range",
    "register_days_range",
)
USER_LOG_NUMERIC: tuple[str, ...] = (
    "follow_user_num",
    "fans_user_num",
    "friend_user_num",
    "register_days",
)
USER_COLUMNS: tuple[str, ...] = (
    "user_id",
    *USER_CATEGORICAL_STRING,
    *USER_CATEGORICAL_INT,
    *USER_LOG_NUMERIC,
)
VIDEO_COLUMNS: tuple[str, ...] = (
    "video_id",
    "author_id",
    "video_type",
    "upload_dt",
    "upload_type",
    "video_duration",
    "music_type",
    "tag",
)
ITEM_FEATURES: tuple[str, ...] = ("video_id", "author_id", "tag")
"""How a video is described in the target and in every feedback sequence."""


def _day_ordinals(dates: np.ndarray) -> np.ndarray:
    """Day numbers of `YYYYMMDD` dates (`-1` where a value is not a date)."""
    unique, inverse = np.unique(dates, return_inverse=True)
    days = np.empty(len(unique), dtype=np.float64)
    for k, date in enumerate(unique.tolist()):
        try:
            days[k] = datetime.date(date // 10000, date // 100 % 100, date % 100).toordinal()
        except ValueError:
            days[k] = -1
    return days[inverse.ravel()]


class KuaiRandSource(FeedbackSource):
    """KuaiRand logs and side features as a `FeedbackSource`.

    Args:
        logs: interaction logs in any order; sorted by time, ties by this order, then line.
        users: the user features CSV.
        videos: the basic video features CSV.
        policy: receives malformed side-feature rows (reading them happens here).
    """

    name = "kuairand"
    user_column = "user_id"
    item_features = ITEM_FEATURES
    context_columns = {"hour": "int64", "tab": "int64", "video_age_days": "float32"}

    def __init__(
        self,
        logs: Sequence[str | os.PathLike],
        users: str | os.PathLike,
        videos: str | os.PathLike,
        policy: ErrorPolicy,
    ) -> None:
        if isinstance(logs, (str, os.PathLike)):
            logs = [logs]
        if not logs:
            raise FeedbackLogError("kuairand: no interaction log given")
        self.logs = [os.fspath(p) for p in logs]
        for path in [*self.logs, users, videos]:
            if not os.path.isfile(path):
                raise FeedbackLogError(f"kuairand: no such file: {os.fspath(path)}")
        self.users = self._read_users(os.fspath(users), policy)
        self.items, self._upload_by_row = self._read_videos(os.fspath(videos), policy)

    # ------------------------------------------------------------------ side tables
    @staticmethod
    def _read_table(
        path: str,
        key: str,
        what: str,
        kinds: dict[str, str],
        policy: ErrorPolicy,
        transform: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    ) -> pl.DataFrame:
        """A side table's good rows, parsed by `kinds`; bad and repeated rows go to `policy`.

        `transform` rewrites the string columns before they are parsed.
        """
        frame, bad = read_log(path, (key, *kinds), [key], infer_types=False)
        if transform is not None:
            frame = transform(frame)
        frame, unparsed = parse_columns(frame, kinds)
        frame, repeated = first_rows(frame, key, what)
        report_side_table_rows(policy, path, bad + unparsed, repeated)
        return frame

    @staticmethod
    def _read_users(path: str, policy: ErrorPolicy) -> FeatureTable:
        kinds = {c: "string" for c in USER_CATEGORICAL_STRING}
        kinds.update({c: "optional_int" for c in USER_CATEGORICAL_INT})
        kinds.update({c: "optional_float" for c in USER_LOG_NUMERIC})
        frame = KuaiRandSource._read_table(path, "user_id", "user", kinds, policy)
        columns: dict[str, np.ndarray] = {}
        dtypes: dict[str, str] = {}
        for c in USER_CATEGORICAL_STRING:
            columns[c], dtypes[c] = frame[c].to_numpy().astype(object), "string"
        for c in USER_CATEGORICAL_INT:
            columns[c], dtypes[c] = frame[c].to_numpy(), "int64"
        for c in USER_LOG_NUMERIC:
            x = frame[c].to_numpy()
            columns[f"log_{c}"] = np.log1p(np.maximum(x, 0.0))  # nan stays nan
            dtypes[f"log_{c}"] = "float32"
        return FeatureTable("users", path, frame["user_id"].to_numpy(), columns, dtypes)

    @staticmethod
    def _read_videos(path: str, policy: ErrorPolicy) -> tuple[FeatureTable, np.ndarray]:
        kinds = {
            "video_duration": "optional_float",
            "author_id": "optional_int",
            "tag": "optional_int",
            "music_type": "optional_int",
            "video_type": "string",
            "upload_type": "string",
            "upload_dt": "date",
        }
        # A list of tags, `"12,7"` (quoted, or not): the first one is the video's tag.
        first_tag = pl.col("tag").str.strip_chars().str.strip_chars('"').str.split(",").list.first()
        frame = KuaiRandSource._read_table(
            path,
            "video_id",
            "video",
            kinds,
            policy,
            lambda f: f.with_columns(tag=first_tag),
        )
        columns = {
            "video_id": frame["video_id"].to_numpy(),
            "author_id": frame["author_id"].to_numpy(),
            "tag": frame["tag"].to_numpy(),
            "video_type": frame["video_type"].to_numpy().astype(object),
            "upload_type": frame["upload_type"].to_numpy().astype(object),
            "music_type": frame["music_type"].to_numpy(),
            "log_duration": np.log1p(np.maximum(frame["video_duration"].to_numpy(), 0.0) / 1000.0),
        }
        dtypes = {
            "video_id": "int64",
            "author_id": "int64",
            "tag": "int64",
            "video_type": "string",
            "upload_type": "string",
            "music_type": "int64",
            "log_duration": "float32",
        }
        uploads = frame["upload_dt"].to_numpy()
        known = np.sort(uploads[~np.isnan(uploads)])
        fill = known[len(known) // 2] if len(known) else math.nan
        upload_by_row = np.where(np.isnan(uploads), fill, uploads)
        table = FeatureTable("videos", path, frame["video_id"].to_numpy(), columns, dtypes)
        if len(known) < len(uploads):
            table.imputed["upload_dt"] = len(uploads) - len(known)
        return table, upload_by_row

    # ------------------------------------------------------------------------ events
    def impressions(self, policy: ErrorPolicy, batch_rows: int) -> Iterator[Impressions]:
        for file_index, path in enumerate(self.logs):
            for frame, bad in read_log_batches(
                path, LOG_COLUMNS, LOG_COLUMNS, batch_rows=batch_rows
            ):
                yield self._batch_impressions(frame, bad, path, file_index, policy)

    def _batch_impressions(
        self, frame: pl.DataFrame, bad: list, path: str, file_index: int, policy: ErrorPolicy
    ) -> Impressions:
        v = {c: frame[c].to_numpy() for c in (*LOG_COLUMNS, "_line")}
        line = v["_line"]
        click, hate, hourmin = v["is_click"], v["is_hate"], v["hourmin"]
        day = _day_ordinals(v["date"])
        hour, minute = np.divmod(hourmin, 100)
        problems = [
            (
                ~np.isin(click, (0, 1)) | ~np.isin(hate, (0, 1)),
                lambda r: f"is_click and is_hate must be 0 or 1, found {click[r]} and {hate[r]}",
            ),
            (day < 0, lambda r: f"date {v['date'][r]} is not a YYYYMMDD date"),
            (
                (hour < 0) | (hour >= 24) | (minute < 0) | (minute >= 60),
                lambda r: f"hourmin {hourmin[r]} is not HHMM",
            ),
        ]
        failed = np.zeros(len(line), dtype=bool)
        for mask, message in problems:
            rows = np.flatnonzero(mask & ~failed)
            bad += [(int(line[r]), f"unreadable value: {message(r)}") for r in rows]
            failed |= mask
        report_bad_rows(policy, path, bad)
        keep = ~failed
        item = v["video_id"][keep]
        row = self.items.indices(item)
        uploaded = np.where(row >= 0, self._upload_by_row[np.maximum(row, 0)], np.nan)
        age = np.where(np.isnan(uploaded), 0.0, np.maximum(day[keep] - uploaded, 0.0))
        feedback = np.where(hate == 1, DISLIKE, np.where(click == 1, CLICK, UNCLICK))[keep]
        return Impressions(
            time=v["time_ms"][keep],
            user=v["user_id"][keep],
            item=item,
            feedback=feedback,
            label=click[keep],
            file_index=np.full(int(keep.sum()), file_index, dtype=np.int64),
            line=line[keep],
            row_key=frame["_key"].to_numpy()[keep],
            context={
                "hour": hour[keep],
                "tab": v["tab"][keep],
                "video_age_days": age.astype(np.float32),
            },
        )

    # ------------------------------------------------------------------------ schema
    def build_schema(self, stats: TrainStatistics, max_length: int) -> Schema:
        def cat(name: str, dtype: str, dim: int, wide: bool = True, **kw: Any):
            return categorical_feature(stats, name, dtype, embedding_dim=dim, wide=wide, **kw)

        categorical = [
            cat("user_id", "int64", 16),
            cat("video_id", "int64", 16),
            cat("author_id", "int64", 16, hashed=True),
            cat("tag", "int64", 8),
            cat("video_type", "string", 4),
            cat("upload_type", "string", 4),
            cat("music_type", "int64", 4),
            cat("hour", "int64", 4),
            cat("tab", "int64", 4),
            *(cat(c, "string", 4) for c in USER_CATEGORICAL_STRING),
            *(cat(c, "int64", 4) for c in USER_CATEGORICAL_INT),
        ]
        numeric = [
            numeric_feature(stats, name)
            for name in (*(f"log_{c}" for c in USER_LOG_NUMERIC), "log_duration", "video_age_days")
        ]
        by_name = {f.name: f for f in categorical}
        degree, tag = by_name["user_active_degree"], by_name["tag"]
        crosses = [
            cross_feature("user_active_degree_x_tag", [degree, tag]),
            cross_feature("user_active_degree_x_video_type", [degree, by_name["video_type"]]),
            cross_feature("hour_x_tag", [by_name["hour"], tag]),
        ]
        return self.feedback_schema(categorical, numeric, max_length, crosses)

    def describe(self) -> dict[str, Any]:
        return {
            "files": {"logs": self.logs, "users": self.users.path, "videos": self.items.path},
            "feedback_rule": "label = is_click; type = dislike if is_hate else click if is_click else unclick",
        }


def prepare_kuairand(
    logs: Sequence[str | os.PathLike] | str | os.PathLike,
    users: str | os.PathLike,
    videos: str | os.PathLike,
    out_dir: str | os.PathLike,
    **options: Any,
) -> dict[str, Any]:
    """Writes a KuaiRand dataset directory (schema, meta and TFRecord shards).

    Args:
        logs: one or more interaction logs, in any order (standard and random logs
            may be combined; ties across files follow this order).
        users: `user_features_*.csv`.
        videos: `video_features_basic_*.csv`.
        out_dir: the dataset directory to write.
        **options: any field of `PrepareOptions` (e.g. `max_length`, `split_by`,
            `on_error`); its docstring gives each one's meaning and default.

    Returns:
        The dataset's meta (also written to `out_dir/meta.json`).

    Raises:
        FeedbackLogError: (a `DatasetError`) for a missing file or column, or with
            `on_error="stop"` a bad row, naming file and line.

    Example:

    ```python
    meta = prepare_kuairand(
        ["log_standard_4_08_to_4_21_pure.csv", "log_random_4_22_to_5_08_pure.csv"],
        "user_features_pure.csv", "video_features_basic_pure.csv", "data/kuairand",
    )
    ```
    """
    return prepare_source(
        lambda policy: KuaiRandSource(logs, users, videos, policy),
        out_dir,
        PrepareOptions(**options),
    )
