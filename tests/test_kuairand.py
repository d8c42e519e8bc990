"""Tests of the KuaiRand loader on tiny logs written in the public layout.

The oracle below recomputes, by brute force over the whole log, what every record
must hold: the split, the feedback type and the sequences of strictly earlier
events (time, then file order), exact duplicates dropped.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from widedeep.data.dataset_format import DatasetError
from widedeep.data.kuairand import KuaiRandSource, prepare_kuairand
from widedeep.data.pipeline import make_dataset
from widedeep.data.prepare import prepare_impressions
from widedeep.data.reader import load_dataset_dir, read_columns
from widedeep.data.source import ErrorPolicy, FeedbackLogError, PrepareOptions

# ----------------------------------------------------------------------------- fixtures

# The header lines of the public files, as published.
LOG_HEADER_LINE = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,"
    "long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab"
)
USER_HEADER_LINE = (
    "user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,follow_user_num,"
    "follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,friend_user_num_range,"
    "register_days,register_days_range," + ",".join(f"onehot_feat{i}" for i in range(18))
)
VIDEO_HEADER_LINE = (
    "video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,server_width,"
    "server_height,music_id,music_type,tag"
)
LOG_HEADER = LOG_HEADER_LINE.split(",")
USER_HEADER = USER_HEADER_LINE.split(",")
VIDEO_HEADER = VIDEO_HEADER_LINE.split(",")
FEEDBACK = ("unclick", "click", "dislike")


def log_row(user: int, video: int, time_ms: int, click: int = 0, hate: int = 0, **extra) -> dict:
    """One log row with plausible values for the columns the loader does not read."""
    row = {name: "0" for name in LOG_HEADER}
    row.update(
        user_id=user,
        video_id=video,
        date=20220425,
        hourmin=1300,
        time_ms=time_ms,
        is_click=click,
        is_hate=hate,
        play_time_ms=1234,
        duration_ms=5678,
        tab=1,
    )
    row.update(extra)
    return row


def write_log(path: Path, rows: Sequence[dict], header: Sequence[str] = LOG_HEADER) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.get(name, "0") for name in header])
    return path


def write_users(path: Path, users: Sequence[int], header: Sequence[str] = USER_HEADER) -> Path:
    degrees = ("full_active", "high_active", "middle_active")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for u in users:
            values = {
                "user_id": u,
                "user_active_degree": degrees[u % 3],
                "is_lowactive_period": 0,
                "is_live_streamer": u % 2,
                "is_video_author": 1,
                "follow_user_num": 10 * u,
                "follow_user_num_range": "(0,10]",
                "fans_user_num": 150,
                "fans_user_num_range": "[100,1k)",
                "friend_user_num": 34,
                "friend_user_num_range": "[30,60)",
                "register_days": 100 + u,
                "register_days_range": "61-90",
            }
            values.update({f"onehot_feat{i}": f"{(u + i) % 4}.0" for i in range(18)})
            values["onehot_feat4"] = ""  # empty cells occur
            writer.writerow([values.get(name, "") for name in header])
    return path


def write_videos(path: Path, videos: Sequence[int], header: Sequence[str] = VIDEO_HEADER) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for v in videos:
            values = {
                "video_id": v,
                "author_id": 1000 + v % 4,
                "video_type": "AD" if v % 5 == 0 else "NORMAL",
                "upload_dt": "2022-04-10" if v % 7 else "",
                "upload_type": "LongImport",
                "visible_status": "0.0",
                "video_duration": f"{1000.0 * (v + 1)}" if v % 6 else "",
                "server_width": "720.0",
                "server_height": "1280.0",
                "music_id": "9155697141",
                "music_type": "9.0",
                "tag": f"{v % 3},{v % 2 + 10}",
            }
            writer.writerow([values.get(name, "") for name in header])
    return path


def tag_of(video: int) -> int:
    return video % 3


def oracle(files: Sequence[Sequence[dict]], max_length: int, test_fraction: float, split_by: str):
    """What the loader must write, computed by brute force over the whole log.

    Returns `{"train": [...], "test": [...]}`, each a list of rows in write order:
    `((time, file, line), user, video, feedback, label, {"click": [...], "unclick": [...], ...})`.
    """
    events = []
    for file_index, rows in enumerate(files):
        for line, row in enumerate(rows, start=2):
            events.append(((int(row["time_ms"]), file_index, line), row))
    events.sort(key=lambda e: e[0])
    kept, seen = [], set()
    for key, row in events:
        raw = tuple(str(row.get(name, "0")) for name in LOG_HEADER)
        if (key[0], raw) in seen:
            continue
        seen.add((key[0], raw))
        kept.append((key, row))
    n = len(kept)
    per_user: dict[int, int] = {}
    for _, row in kept:
        per_user[int(row["user_id"])] = per_user.get(int(row["user_id"]), 0) + 1
    out = {"train": [], "test": []}
    seen_user: dict[int, int] = {}
    for position, (key, row) in enumerate(kept):
        user = int(row["user_id"])
        hate, click = int(row["is_hate"]), int(row["is_click"])
        feedback = 2 if hate else 1 if click else 0
        before = [
            r
            for k, r in kept
            if k < key and int(r["user_id"]) == user  # strictly before in (time, file, line)
        ]
        sequences = {}
        for name in ("click", "unclick", "dislike"):
            code = FEEDBACK.index(name)
            items = [
                int(r["video_id"])
                for r in reversed(before)
                if (2 if int(r["is_hate"]) else 1 if int(r["is_click"]) else 0) == code
            ]
            sequences[name] = items[:max_length]
        if split_by == "time":
            is_test = position >= n - int(n * test_fraction + 0.5)
        else:
            i = seen_user.get(user, 0)
            seen_user[user] = i + 1
            is_test = i >= per_user[user] - int(per_user[user] * test_fraction + 0.5)
        out["test" if is_test else "train"].append(
            (key, user, int(row["video_id"]), feedback, click, sequences)
        )
    return out


SEQ = ("click", "unclick", "dislike")
ONE_SHARD = {"train": 1, "test": 1}


def prepare(
    tmp_path: Path, files: Sequence[Sequence[dict]], users=None, videos=None, **kwargs
) -> tuple[Path, dict]:
    """Write the logs and side tables into tmp_path and run the loader."""
    logs = [write_log(tmp_path / f"log_{i}.csv", rows) for i, rows in enumerate(files)]
    if users is None:
        users = sorted({int(r["user_id"]) for rows in files for r in rows})
    if videos is None:
        videos = sorted({int(r["video_id"]) for rows in files for r in rows})
    users_path = write_users(tmp_path / "user_features.csv", users)
    videos_path = write_videos(tmp_path / "video_features_basic.csv", videos)
    out = tmp_path / "out"
    kwargs.setdefault("num_shards", ONE_SHARD)
    run_rows = kwargs.pop("run_rows", None)
    if run_rows is None:
        meta = prepare_kuairand(logs, users_path, videos_path, out, **kwargs)
        return out, meta
    # Out of core: sorted runs of `run_rows` rows spilled to a scratch folder and merged,
    # then written in chunks of 5 rows (what a log far above the memory limit goes through).
    options = PrepareOptions(**kwargs)
    policy = ErrorPolicy(options.on_error)
    source = KuaiRandSource(logs, users_path, videos_path, policy)
    meta = prepare_impressions(source, out, options, policy, chunk_rows=5, run_rows=run_rows)
    assert meta["spilled"] and not list(tmp_path.glob(".widedeep-prepare-*"))  # scratch removed
    return out, meta


def written(out: Path, split: str, item_feature: str = "video_id") -> list[tuple]:
    """Records of a split in write order, as `(user, video, feedback, label, sequences)`."""
    names = ["user_id", "video_id", "feedback", "label", *(f"{s}_{item_feature}" for s in SEQ)]
    cols = read_columns(out, split, names)
    rows = []
    for r in range(len(cols["user_id"])):
        sequences = {s: [int(v) for v in cols[f"{s}_{item_feature}"][r] if v != -1] for s in SEQ}
        rows.append(
            (
                int(cols["user_id"][r]),
                int(cols["video_id"][r]),
                int(cols["feedback"][r]),
                int(cols["label"][r]),
                sequences,
            )
        )
    return rows


def seqs(click=(), unclick=(), dislike=()) -> dict:
    return {"click": list(click), "unclick": list(unclick), "dislike": list(dislike)}


CLICK, UNCLICK, DISLIKE = 1, 0, 2

TWO_USER_LOG = [
    log_row(1, 10, 100, click=1),  # line 2
    log_row(2, 10, 100),  # line 3: same time, other user
    log_row(1, 11, 200),  # line 4
    log_row(1, 12, 200, click=1, hate=1),  # line 5: tie with line 4, which is before it
    log_row(1, 12, 200, click=1, hate=1),  # line 6: exact duplicate of line 5 -> dropped
    log_row(2, 13, 300, click=1),  # line 7
    log_row(1, 13, 300, click=1),  # line 8
    log_row(1, 15, 350, click=1),  # line 9
    log_row(1, 14, 400, click=1),  # line 10: test
    log_row(2, 11, 500),  # line 11: test
]


# -------------------------------------------------------------------------------- tests


def test_hand_computed_two_user_log(tmp_path):
    out, meta = prepare(tmp_path, [TWO_USER_LOG], max_length=2, test_fraction=0.25)
    assert written(out, "train") == [
        (1, 10, CLICK, 1, seqs()),
        (2, 10, UNCLICK, 0, seqs()),
        (1, 11, UNCLICK, 0, seqs(click=[10])),
        (
            1,
            12,
            DISLIKE,
            1,
            seqs(click=[10], unclick=[11]),
        ),  # sees line 4 (same time, earlier line)
        (2, 13, CLICK, 1, seqs(unclick=[10])),
        (1, 13, CLICK, 1, seqs(click=[10], unclick=[11], dislike=[12])),
        (1, 15, CLICK, 1, seqs(click=[13, 10], unclick=[11], dislike=[12])),
    ]
    assert written(out, "test") == [
        (1, 14, CLICK, 1, seqs(click=[15, 13], unclick=[11], dislike=[12])),  # truncated to L=2
        (2, 11, UNCLICK, 0, seqs(click=[13], unclick=[10])),
    ]
    assert meta["impressions"] == 9
    assert meta["duplicates_dropped"] == 1
    assert meta["skipped"] == {}
    assert meta["feedback_counts"] == {
        "train": {"unclick": 2, "click": 4, "dislike": 1},
        "test": {"unclick": 1, "click": 1, "dislike": 0},
    }
    assert meta["split"]["test_starts_at"]["time"] == 400
    assert meta["split"]["test_starts_at"]["line"] == 10
    assert meta["splits"]["train"]["examples"] == 7 and meta["splits"]["test"]["examples"] == 2
    # Side features of sequence items come from the video table.
    cols = read_columns(out, "test", ["click_tag", "click_author_id", "dislike_tag", "hour"])
    np.testing.assert_array_equal(cols["click_tag"][0], [tag_of(15), tag_of(13)])
    np.testing.assert_array_equal(cols["click_author_id"][0], [1000 + 15 % 4, 1000 + 13 % 4])
    np.testing.assert_array_equal(cols["dislike_tag"][1], [-1, -1])
    np.testing.assert_array_equal(cols["hour"], [13, 13])


def test_vocabularies_come_from_train_impressions_only(tmp_path):
    out, _ = prepare(tmp_path, [TWO_USER_LOG], max_length=2, test_fraction=0.25)
    schema, _ = load_dataset_dir(out)
    assert sorted(schema.feature("video_id").vocabulary) == [10, 11, 12, 13, 15]  # 14 is test-only
    assert schema.feature("user_id").vocabulary is not None
    assert schema.feature("author_id").hash_buckets is not None
    assert [s.name for s in schema.sequences] == ["click", "unclick", "dislike"]
    assert all(s.item_features == ["video_id", "author_id", "tag"] for s in schema.sequences)
    assert schema.target_item_features == ["video_id", "author_id", "tag"]
    assert schema.group_key == "user_id"
    outcome_columns = {"is_like", "long_view", "play_time_ms", "duration_ms", "is_click", "is_hate"}
    assert not outcome_columns & set(schema.input_signature())


def _random_log(rng: random.Random, n: int, users: int, videos: int, t0: int = 0) -> list[dict]:
    rows, t = [], t0
    for _ in range(n):
        t += rng.choice([0, 0, 0, 1, 2])  # many ties
        hate = int(rng.random() < 0.15)
        row = log_row(
            rng.randrange(users), rng.randrange(videos), t, click=int(rng.random() < 0.4), hate=hate
        )
        rows.append(row)
        if rng.random() < 0.1:
            rows.append(dict(row))  # exact duplicate
    return rows


@pytest.mark.parametrize("run_rows", [None, 7], ids=["in_memory", "out_of_core"])
@pytest.mark.parametrize("split_by", ["time", "user"])
def test_sequences_and_split_match_bruteforce_oracle(tmp_path, split_by, run_rows):
    rng = random.Random(7)
    files = [_random_log(rng, 120, 4, 12), _random_log(rng, 60, 4, 12)]  # standard + random log
    out, meta = prepare(
        tmp_path, files, max_length=3, test_fraction=0.3, split_by=split_by, run_rows=run_rows
    )
    expected = oracle(files, max_length=3, test_fraction=0.3, split_by=split_by)
    assert written(out, "train") == [row[1:] for row in expected["train"]]
    assert written(out, "test") == [row[1:] for row in expected["test"]]
    assert meta["duplicates_dropped"] == sum(len(f) for f in files) - meta["impressions"] > 0
    train_keys = [row[0] for row in expected["train"]]
    test_keys = [row[0] for row in expected["test"]]
    if split_by == "time":
        # every test impression comes after every train impression in (time, file, line)
        assert max(train_keys) < min(test_keys)
        assert max(k[0] for k in train_keys) <= min(k[0] for k in test_keys)
    else:
        for user in {row[1] for row in expected["train"] + expected["test"]}:
            tr = [row[0] for row in expected["train"] if row[1] == user]
            te = [row[0] for row in expected["test"] if row[1] == user]
            assert len(te) == int(0.3 * (len(tr) + len(te)) + 0.5)
            if tr and te:
                assert max(tr) < min(te)


def test_time_split_cuts_ties_by_file_order(tmp_path):
    rows = [log_row(u, 10 + u, 500, click=1) for u in (4, 3, 2, 1)]  # one timestamp
    out, meta = prepare(tmp_path, [rows], test_fraction=0.5)
    assert [r[0] for r in written(out, "train")] == [4, 3]
    assert [r[0] for r in written(out, "test")] == [2, 1]
    assert meta["split"]["test_starts_at"] == {
        "time": 500,
        "file": str(tmp_path / "log_0.csv"),
        "line": 4,
    }


def test_split_by_user_puts_each_users_last_impressions_in_test(tmp_path):
    rows = [log_row(1, v, t, click=1) for t, v in enumerate(range(10, 15))]
    rows += [log_row(2, v, 100 + t) for t, v in enumerate(range(20, 22))]
    out, _ = prepare(tmp_path, [rows], test_fraction=0.4, split_by="user")
    assert [r[:2] for r in written(out, "test")] == [(1, 13), (1, 14), (2, 21)]  # 2 of 5, 1 of 2
    test = written(out, "test")
    assert test[1][4]["click"] == [
        13,
        12,
        11,
        10,
    ]  # a test impression sees earlier test feedback too


def test_several_logs_merge_by_time_then_given_file_order(tmp_path):
    a = [log_row(1, 10, 100, click=1), log_row(1, 12, 300, click=1)]
    b = [log_row(1, 11, 100, click=1), log_row(1, 13, 200, click=1)]
    out, _ = prepare(tmp_path, [a, b], test_fraction=0.0)
    assert [(r[1], r[4]["click"]) for r in written(out, "train")] == [
        (10, []),
        (11, [10]),  # same time: file a was given first
        (13, [11, 10]),
        (12, [13, 11, 10]),
    ]
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    out2, _ = prepare(swapped, [b, a], test_fraction=0.0)
    assert [(r[1], r[4]["click"]) for r in written(out2, "train")][:2] == [(11, []), (10, [11])]


def test_feedback_mapping_dislike_wins_label_is_click(tmp_path):
    rows = [
        log_row(1, 10, 1, click=1),
        log_row(1, 11, 2, click=0),
        log_row(1, 12, 3, click=0, hate=1),
        log_row(1, 13, 4, click=1, hate=1),
    ]
    out, meta = prepare(tmp_path, [rows], test_fraction=0.0)
    assert [(r[2], r[3]) for r in written(out, "train")] == [
        (CLICK, 1),
        (UNCLICK, 0),
        (DISLIKE, 0),
        (DISLIKE, 1),
    ]
    assert "dislike" in meta["feedback_rule"]


@pytest.mark.parametrize("which", ["log", "users", "videos"])
def test_missing_column_names_file_and_column(tmp_path, which):
    logs = [write_log(tmp_path / "log.csv", TWO_USER_LOG)]
    users = write_users(tmp_path / "users.csv", [1, 2])
    videos = write_videos(tmp_path / "videos.csv", range(10, 16))
    if which == "log":
        logs = [
            write_log(tmp_path / "bad.csv", TWO_USER_LOG, [h for h in LOG_HEADER if h != "is_hate"])
        ]
        column, path = "is_hate", logs[0]
    elif which == "users":
        users = write_users(
            tmp_path / "bad.csv", [1, 2], [h for h in USER_HEADER if h != "onehot_feat7"]
        )
        column, path = "onehot_feat7", users
    else:
        videos = write_videos(
            tmp_path / "bad.csv", range(10, 16), [h for h in VIDEO_HEADER if h != "tag"]
        )
        column, path = "tag", videos
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}.*missing column.*'{column}'"):
        prepare_kuairand(logs, users, videos, tmp_path / "out")


def _bad_log(tmp_path: Path) -> Path:
    path = write_log(tmp_path / "log.csv", TWO_USER_LOG)
    lines = path.read_text().splitlines()
    lines.insert(3, "1,11,20220425,1300,not-a-time,0,0,0,0,0,0,0,0,0,0,0,0,0,1")  # line 4
    lines.insert(5, "1,11,20220425")  # line 6: too few fields
    lines.insert(
        6, ",".join(str(log_row(99, 10, 200)[h]) for h in LOG_HEADER)
    )  # line 7: unknown user
    lines.insert(
        7, ",".join(str(log_row(1, 77, 200, click=1)[h]) for h in LOG_HEADER)
    )  # line 8: unknown video
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_row_stop_names_file_and_line(tmp_path):
    log = _bad_log(tmp_path)
    users = write_users(tmp_path / "users.csv", [1, 2])
    videos = write_videos(tmp_path / "videos.csv", range(10, 16))
    with pytest.raises(
        FeedbackLogError,
        match=rf"{re.escape(str(log))}, line 4: .*time_ms is not an integer: 'not-a-time'",
    ):
        prepare_kuairand([log], users, videos, tmp_path / "out", on_error="stop")


def test_unknown_user_stop_names_file_and_line(tmp_path):
    rows = [log_row(1, 10, 1), log_row(3, 10, 2)]
    log = write_log(tmp_path / "log.csv", rows)
    users = write_users(tmp_path / "users.csv", [1])
    videos = write_videos(tmp_path / "videos.csv", [10])
    with pytest.raises(
        DatasetError, match=rf"{re.escape(str(log))}, line 3: user 3 is not in .*users.csv"
    ):
        prepare_kuairand([log], users, videos, tmp_path / "out", on_error="stop")


def test_skip_policy_counts_every_skipped_row(tmp_path, capsys):
    log = _bad_log(tmp_path)
    users = write_users(tmp_path / "users.csv", [1, 2])
    lines = users.read_text().splitlines()
    users.write_text(
        "\n".join([*lines, "5,full_active,0,1"]) + "\n"
    )  # malformed feature row, line 4
    videos = write_videos(tmp_path / "videos.csv", range(10, 16))
    meta = prepare_kuairand(
        [log],
        users,
        videos,
        tmp_path / "out",
        max_length=2,
        test_fraction=0.25,
        num_shards=ONE_SHARD,
    )
    assert meta["skipped"] == {
        "malformed_feature_rows": 1,
        "malformed_rows": 2,
        "unknown_items": 1,
        "unknown_users": 1,
    }
    assert f"{log}, line 4" in meta["skipped_examples"]["malformed_rows"][0]
    assert f"{log}, line 6" in meta["skipped_examples"]["malformed_rows"][1]
    assert f"{log}, line 8: item 77" in meta["skipped_examples"]["unknown_items"][0]
    assert f"{users}, line 4" in meta["skipped_examples"]["malformed_feature_rows"][0]
    assert "skipped" in capsys.readouterr().err
    # Skipped rows are not impressions and not history: the records are those of the clean log.
    out = tmp_path / "out"
    assert meta["impressions"] == 9
    assert all(77 not in r[4]["click"] for r in written(out, "train") + written(out, "test"))
    assert json.loads((out / "meta.json").read_text())["skipped"] == meta["skipped"]


def _shards(out: Path) -> dict[str, bytes]:
    """Every record and table file of a dataset directory, by path."""
    files = [*out.glob("*/*.tfrecord"), *out.glob("tables/*/*.npy")]
    assert any(p.suffix == ".npy" for p in files)  # the side features and sequences are tables
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(files)}


def test_a_shuffled_log_gives_the_dataset_of_the_sorted_log(tmp_path):
    # Timestamps in random order, but rows of one timestamp keep their relative
    # (file) order: the tie policy, so the dataset must be the sorted log's, byte for byte.
    rows = _random_log(random.Random(3), 150, 5, 12)
    by_time: dict[int, list[dict]] = {}
    for row in rows:
        by_time.setdefault(row["time_ms"], []).append(row)
    times = list(by_time)
    random.Random(4).shuffle(times)
    shuffled = [row for t in times for row in by_time[t]]
    assert shuffled != rows
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    out_sorted, meta_sorted = prepare(tmp_path / "a", [rows], max_length=3, item_history=True)
    out_shuffled, meta_shuffled = prepare(
        tmp_path / "b", [shuffled], max_length=3, item_history=True
    )
    assert _shards(out_sorted) == _shards(out_shuffled)
    assert (out_sorted / "schema.json").read_text() == (out_shuffled / "schema.json").read_text()
    assert meta_sorted["impressions"] == meta_shuffled["impressions"]
    assert meta_sorted["duplicates_dropped"] == meta_shuffled["duplicates_dropped"] > 0
    expected = oracle([rows], max_length=3, test_fraction=0.2, split_by="time")
    assert written(out_shuffled, "train") == [row[1:] for row in expected["train"]]
    # The same log sorted out of core (runs of 11 rows, merged) gives the same dataset too,
    # the item history's running counters included.
    (tmp_path / "c").mkdir()
    out_external, meta_external = prepare(
        tmp_path / "c", [shuffled], max_length=3, run_rows=11, item_history=True
    )
    # (Its records pack rows 5 at a time, the writer's chunks: compare the columns read back.)
    # (The numeric features' mean and std are sums taken chunk by chunk: equal to rounding.)
    a, b = (json.loads((out / "schema.json").read_text()) for out in (out_sorted, out_external))
    for x, y in zip(a.pop("numeric"), b.pop("numeric"), strict=True):
        assert x["mean"] == pytest.approx(y["mean"], rel=1e-9)
        assert x["std"] == pytest.approx(y["std"], rel=1e-9)
        assert {k: v for k, v in x.items() if k not in ("mean", "std")} == {
            k: v for k, v in y.items() if k not in ("mean", "std")
        }
    assert a == b
    tables = {k: v for k, v in _shards(out_sorted).items() if k.startswith("tables")}
    assert {k: v for k, v in _shards(out_external).items() if k.startswith("tables")} == tables
    schema, _ = load_dataset_dir(out_sorted)
    names = [*schema.input_signature(), schema.label, schema.feedback]
    for split in ("train", "test"):
        a, b = read_columns(out_sorted, split, names), read_columns(out_external, split, names)
        for name in names:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{split}: {name}")
    kept = ("impressions", "users", "time_range", "feedback_counts", "duplicates_dropped")
    assert {k: meta_external[k] for k in kept} == {k: meta_sorted[k] for k in kept}


def test_prepare_then_make_dataset_round_trip(tmp_path):
    out, meta = prepare(tmp_path, [TWO_USER_LOG], max_length=4, test_fraction=0.25)
    schema, loaded = load_dataset_dir(out)
    assert loaded == meta
    assert meta["imputed"] == {"videos.log_duration": 1, "videos.upload_dt": 1}  # videos 12 and 14
    features, label, weight = next(
        iter(make_dataset(out, "train", batch_size=16, feedback_weights=(1, 1, 10)))
    )
    assert set(features) == set(schema.input_signature())
    assert features["click_video_id"].shape == (7, 4)
    assert features["user_active_degree"].dtype.name == "string"
    assert np.isfinite(features["log_duration"].numpy()).all()
    np.testing.assert_array_equal(label.numpy().ravel(), [1, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(weight.numpy().ravel(), [1, 1, 1, 10, 1, 1, 1])
    # numeric statistics and boundaries come from the train rows
    duration = schema.feature("log_duration")
    assert duration.wide and duration.boundaries


def test_bad_options_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="test_fraction"):
        prepare(tmp_path, [TWO_USER_LOG], test_fraction=1.0)
    with pytest.raises(ValueError, match="split_by"):
        prepare(tmp_path, [TWO_USER_LOG], split_by="random")
    with pytest.raises(ValueError, match="on_error"):
        prepare(tmp_path, [TWO_USER_LOG], on_error="ignore")
