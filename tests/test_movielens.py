"""Tests of the MovieLens loader on tiny 100K and 1M folders written in the public layouts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from widedeep.data.dataset_format import DatasetError
from widedeep.data.movielens import (
    GENRES_100K,
    MovieLensSource,
    age_group,
    detect_layout,
    feedback_of_rating,
    prepare_movielens,
)
from widedeep.data.pipeline import make_dataset
from widedeep.data.prepare import prepare_impressions
from widedeep.data.reader import load_dataset_dir, read_columns
from widedeep.data.source import ErrorPolicy, FeedbackLogError, PrepareOptions

ONE_SHARD = {"train": 1, "test": 1}
SEQ = ("click", "unclick", "dislike")
UNCLICK, CLICK, DISLIKE = 0, 1, 2

# ----------------------------------------------------------------------------- fixtures


def genre_flags(movie: int) -> list[int]:
    """Two genres per movie: Drama (index 8) and one depending on the id."""
    flags = [0] * len(GENRES_100K)
    flags[8] = 1
    flags[1 + movie % 17] = 1
    return flags


def first_genre(movie: int) -> str:
    return GENRES_100K[min(8, 1 + movie % 17)]


def write_100k(
    folder: Path, ratings: Sequence[tuple[int, int, int, int]], users=None, movies=None
) -> Path:
    """u.data (tab-separated), u.user and u.item ('|', latin-1 titles) as in MovieLens 100K."""
    folder.mkdir(parents=True, exist_ok=True)
    users = sorted({r[0] for r in ratings}) if users is None else users
    movies = sorted({r[1] for r in ratings}) if movies is None else movies
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    ages = {1: 24, 2: 60, 3: 17}
    (folder / "u.user").write_text(
        "".join(f"{u}|{ages.get(u, 30)}|{'MF'[u % 2]}|technician|{85711 + u:05d}\n" for u in users)
    )
    lines = []
    for m in movies:
        date = "" if m == 99 else f"01-Jan-{1990 + m % 9}"
        title = f"Café {m} ({1990 + m % 9})"  # latin-1: not valid UTF-8 once encoded
        flags = "|".join(map(str, genre_flags(m)))
        lines.append(f"{m}|{title}|{date}||http://us.imdb.com/M/title-exact?{m}|{flags}\n")
    (folder / "u.item").write_bytes("".join(lines).encode("latin-1"))
    return folder


def write_1m(folder: Path, ratings: Sequence[tuple[int, int, int, int]]) -> Path:
    """ratings.dat, users.dat, movies.dat ('::', latin-1) as in MovieLens 1M."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ratings))
    users = sorted({r[0] for r in ratings})
    (folder / "users.dat").write_text(
        "".join(f"{u}::{'MF'[u % 2]}::25::12::{48067 + u}\n" for u in users)
    )
    movies = sorted({r[1] for r in ratings})
    (folder / "movies.dat").write_bytes(
        "".join(
            f"{m}::Amélie {m} ({1995 + m % 3})::Animation|Children's|Comedy\n" for m in movies
        ).encode("latin-1")
    )
    return folder


def written(out: Path, split: str) -> list[tuple]:
    names = ["user_id", "movie_id", "feedback", "label", *(f"{s}_movie_id" for s in SEQ)]
    cols = read_columns(out, split, names)
    return [
        (
            int(cols["user_id"][r]),
            int(cols["movie_id"][r]),
            int(cols["feedback"][r]),
            int(cols["label"][r]),
            {s: [int(v) for v in cols[f"{s}_movie_id"][r] if v != -1] for s in SEQ},
        )
        for r in range(len(cols["user_id"]))
    ]


def seqs(click=(), unclick=(), dislike=()) -> dict:
    return {"click": list(click), "unclick": list(unclick), "dislike": list(dislike)}


# u.data is not in time order; the loader sorts by time, ties by line.
RATINGS_100K = [
    (1, 10, 5, 300),  # line 1
    (2, 10, 3, 100),  # line 2
    (1, 11, 2, 100),  # line 3
    (1, 12, 3, 100),  # line 4: tie with line 3, which is before it
    (1, 13, 4, 200),  # line 5
    (2, 11, 5, 300),  # line 6: test
    (1, 12, 3, 100),  # line 7: exact duplicate of line 4 -> dropped
    (1, 14, 1, 400),  # line 8: test
]

# -------------------------------------------------------------------------------- tests


def test_feedback_of_rating():
    assert [feedback_of_rating(r) for r in (1, 2, 3, 4, 5)] == [
        (DISLIKE, 0),
        (DISLIKE, 0),
        (UNCLICK, 0),
        (CLICK, 1),
        (CLICK, 1),
    ]
    assert [age_group(a) for a in (7, 18, 24, 25, 49, 50, 56, 80)] == [
        1,
        18,
        18,
        25,
        45,
        50,
        56,
        56,
    ]


def test_detects_both_layouts(tmp_path):
    assert detect_layout(write_100k(tmp_path / "ml-100k", RATINGS_100K)) == "100k"
    assert detect_layout(write_1m(tmp_path / "ml-1m", RATINGS_100K)) == "1m"
    with pytest.raises(DatasetError, match="neither u.data .* nor ratings.dat"):
        detect_layout(tmp_path)
    (tmp_path / "ml-1m" / "movies.dat").unlink()
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "ml-1m" / "movies.dat"))):
        detect_layout(tmp_path / "ml-1m")


def test_100k_hand_computed_sequences_sorted_by_time_ties_in_file_order(tmp_path):
    folder = write_100k(tmp_path / "ml-100k", RATINGS_100K)
    out = tmp_path / "out"
    meta = prepare_movielens(folder, out, test_fraction=0.3, num_shards=ONE_SHARD)
    assert meta["layout"] == "100k"
    assert written(out, "train") == [
        (2, 10, UNCLICK, 0, seqs()),
        (1, 11, DISLIKE, 0, seqs()),
        (1, 12, UNCLICK, 0, seqs(dislike=[11])),
        (1, 13, CLICK, 1, seqs(unclick=[12], dislike=[11])),
        (1, 10, CLICK, 1, seqs(click=[13], unclick=[12], dislike=[11])),
    ]
    assert written(out, "test") == [
        (2, 11, CLICK, 1, seqs(unclick=[10])),
        (1, 14, DISLIKE, 0, seqs(click=[10, 13], unclick=[12], dislike=[11])),
    ]
    assert meta["duplicates_dropped"] == 1
    assert meta["impressions"] == 7
    assert meta["split"]["test_starts_at"]["time"] == 300
    assert meta["split"]["test_starts_at"]["line"] == 6
    cols = read_columns(
        out,
        "train",
        ["age", "gender", "occupation", "zip3", "genre", "release_year", "click_genre"],
    )
    assert cols["age"].tolist() == [56, 18, 18, 18, 18]  # user 2 is 60, user 1 is 24
    assert cols["gender"].tolist() == [b"M", b"F", b"F", b"F", b"F"]
    assert cols["zip3"].tolist() == [b"857"] * 5
    assert cols["genre"].tolist() == [first_genre(m).encode() for m in (10, 11, 12, 13, 10)]
    np.testing.assert_allclose(cols["release_year"], [1991, 1992, 1993, 1994, 1991])
    assert cols["click_genre"][4].tolist() == [first_genre(13).encode()] + [b""] * 29


def test_100k_split_by_user(tmp_path):
    folder = write_100k(tmp_path / "ml-100k", RATINGS_100K)
    out = tmp_path / "out"
    prepare_movielens(folder, out, test_fraction=0.3, split_by="user", num_shards=ONE_SHARD)
    # user 1: 5 impressions -> 2 test (t=300 and t=400); user 2: 2 -> round(0.6) = 1 test
    assert [r[:2] for r in written(out, "test")] == [(1, 10), (2, 11), (1, 14)]


def test_1m_layout_and_features(tmp_path):
    ratings = [(1, 5, 4, 10), (2, 5, 2, 11), (1, 6, 3, 12), (1, 7, 5, 13), (2, 6, 4, 14)]
    folder = write_1m(tmp_path / "ml-1m", ratings)
    out = tmp_path / "out"
    meta = prepare_movielens(folder, out, test_fraction=0.2, num_shards=ONE_SHARD)
    assert meta["layout"] == "1m"
    assert [r[2:4] for r in written(out, "train")] == [
        (CLICK, 1),
        (DISLIKE, 0),
        (UNCLICK, 0),
        (CLICK, 1),
    ]
    cols = read_columns(out, "train", ["occupation", "age", "genre", "release_year", "zip3"])
    assert cols["occupation"].tolist() == [b"programmer"] * 4  # 1M code 12
    assert cols["age"].tolist() == [25] * 4
    assert cols["genre"].tolist() == [b"Animation"] * 4
    np.testing.assert_allclose(cols["release_year"], [1997, 1997, 1995, 1996])
    assert cols["zip3"].tolist() == [b"480"] * 4
    assert written(out, "test") == [(2, 6, CLICK, 1, seqs(dislike=[5]))]


def test_malformed_rows_stop_names_file_and_line(tmp_path):
    folder = write_100k(tmp_path / "ml", RATINGS_100K)
    with open(folder / "u.data", "a") as f:
        f.write("1\t12\t7\t500\n")  # line 9: rating out of range
    with pytest.raises(
        FeedbackLogError, match=re.escape(f"{folder / 'u.data'}, line 9") + ".*rating 7"
    ):
        prepare_movielens(folder, tmp_path / "out", on_error="stop")


def test_skip_policy_counts(tmp_path, capsys):
    folder = write_100k(tmp_path / "ml", RATINGS_100K, users=[1, 2], movies=[10, 11, 12, 13, 14])
    with open(folder / "u.data", "a") as f:
        f.write("1\t12\t7\t500\n")  # line 9: malformed
        f.write("1\t12\n")  # line 10: malformed
        f.write("3\t12\t4\t500\n")  # line 11: unknown user
        f.write("1\t77\t4\t250\n")  # line 12: unknown movie
    meta = prepare_movielens(folder, tmp_path / "out", test_fraction=0.3, num_shards=ONE_SHARD)
    assert meta["skipped"] == {"malformed_rows": 2, "unknown_items": 1, "unknown_users": 1}
    assert "line 12: item 77 is not in" in meta["skipped_examples"]["unknown_items"][0]
    assert "skipped" in capsys.readouterr().err
    assert meta["impressions"] == 7
    assert all(77 not in r[4]["click"] for r in written(tmp_path / "out", "test"))


class RecordingPolicy(ErrorPolicy):
    """Keeps every rejected row: `(kind, line, message)`."""

    def __init__(self) -> None:
        super().__init__("skip")
        self.rejected: list[tuple[str, int, str]] = []

    def reject(self, kind: str, path: str, line: int, message: str) -> None:
        self.rejected.append((kind, line, message))


def test_side_file_rows_are_named_for_their_first_problem_100k(tmp_path):
    folder = write_100k(tmp_path / "ml", RATINGS_100K)
    (folder / "u.user").write_text(
        "1|24|M|technician|85711\n"
        "2|2.5|F|writer|1\n"  # line 2
        "3|40.0|M|other|2\n"  # 40.0 is 40: age group 35
        "x|30|M|other|3\n"  # line 4
        "1|30|F|other|4\n"  # line 5: user 1 again
        "4|30|F\n"  # line 6
        "z|3.5|M|other|5\n"  # line 7: the age first
    )
    flags = ["0"] * len(GENRES_100K)
    rows = [
        ["10", "A (1990)", "01-Jan-1990", "", "u", *flags],
        ["11", "B (1991)", "01-Jan-1991", "", "u", "0", "x", *flags[2:]],  # line 2: Action
        ["y", "C (1992)", "01-Jan-1992", "", "u", *flags],  # line 3
        ["13", "D (1993)", "01-Jan-19x3", "", "u", *flags],  # line 4: the year
    ]
    (folder / "u.item").write_text("".join("|".join(r) + "\n" for r in rows))
    policy = RecordingPolicy()
    source = MovieLensSource(folder, policy)
    assert policy.rejected == [
        ("malformed_feature_rows", 2, "unreadable value: age is not an integer: '2.5'"),
        ("malformed_feature_rows", 4, "unreadable value: user is not an integer: 'x'"),
        ("duplicate_feature_rows", 5, "user 1 listed again (first row kept)"),
        ("malformed_feature_rows", 6, "expected 5 fields separated by '|', found 3"),
        ("malformed_feature_rows", 7, "unreadable value: age is not an integer: '3.5'"),
        ("malformed_feature_rows", 2, "unreadable value: Action flag is not an integer: 'x'"),
        ("malformed_feature_rows", 3, "unreadable value: movie is not an integer: 'y'"),
        (
            "malformed_feature_rows",
            4,
            "unreadable value: could not convert string to float: '19x3'",
        ),
    ]
    assert source.users.keys.tolist() == [1, 3]
    assert source.users.columns["age"].tolist() == [18, 35, -1]  # the last: the missing row
    assert source.items.keys.tolist() == [10]


def test_side_file_rows_are_named_for_their_first_problem_1m(tmp_path):
    folder = write_1m(tmp_path / "ml-1m", [(1, 5, 4, 10)])
    (folder / "users.dat").write_text(
        "1::M::25::12::48067\n"
        "2::F::30::12::1\n"  # line 2: not an age group
        "3::F::25::x::1\n"  # line 3
        "4::F::25::21::1\n"  # line 4: no such occupation
        "5::F::1.5::x::1\n"  # line 5: the age first
        "6::F::30::x::1\n"  # line 6: the age group first
        "7::F::18.0::0::1\n"  # 18.0 is 18
    )
    (folder / "movies.dat").write_text("5::A::B (1995)::Drama\nz::C (1996)::Comedy\n")
    policy = RecordingPolicy()
    source = MovieLensSource(folder, policy)
    groups = "(1, 18, 25, 35, 45, 50, 56)"
    assert policy.rejected == [
        ("malformed_feature_rows", 2, f"unreadable value: age '30' is not a 1M age group {groups}"),
        ("malformed_feature_rows", 3, "unreadable value: occupation is not an integer: 'x'"),
        ("malformed_feature_rows", 4, "unreadable value: occupation code '21' is not in 0..20"),
        ("malformed_feature_rows", 5, "unreadable value: age is not an integer: '1.5'"),
        ("malformed_feature_rows", 6, f"unreadable value: age '30' is not a 1M age group {groups}"),
        ("malformed_feature_rows", 2, "unreadable value: movie is not an integer: 'z'"),
    ]
    assert source.users.keys.tolist() == [1, 7]
    assert source.users.columns["occupation"].tolist() == ["programmer", "other", ""]
    assert source.items.columns["genre"].tolist() == ["Drama", ""]  # title "A::B (1995)"
    assert source.items.columns["release_year"][0] == 1995


def test_missing_release_year_is_imputed_and_counted(tmp_path):
    folder = write_100k(tmp_path / "ml", [(1, 10, 4, 1), (1, 99, 4, 2), (1, 12, 4, 3)])
    meta = prepare_movielens(folder, tmp_path / "out", test_fraction=0.0, num_shards=ONE_SHARD)
    assert meta["imputed"] == {"movies.release_year": 1}
    years = read_columns(tmp_path / "out", "train", ["release_year"])["release_year"]
    np.testing.assert_allclose(years, [1991, 1992, 1993])  # 99 gets the median of 1991, 1993


def test_prepare_then_make_dataset_round_trip(tmp_path):
    folder = write_100k(tmp_path / "ml", RATINGS_100K)
    out = tmp_path / "out"
    meta = prepare_movielens(folder, out, max_length=5, test_fraction=0.3, num_shards=ONE_SHARD)
    schema, loaded = load_dataset_dir(out)
    assert loaded == meta
    assert sorted(schema.feature("movie_id").vocabulary) == [10, 11, 12, 13]  # 14 is test-only
    assert {c.name for c in schema.crosses} == {
        "gender_x_genre",
        "age_x_genre",
        "occupation_x_genre",
    }
    assert schema.target_item_features == ["movie_id", "genre"]
    features, label, _ = next(iter(make_dataset(out, "test", batch_size=8)))
    assert set(features) == set(schema.input_signature())
    assert features["unclick_movie_id"].numpy().tolist() == [
        [10, -1, -1, -1, -1],
        [12, -1, -1, -1, -1],
    ]
    np.testing.assert_array_equal(label.numpy().ravel(), [1, 0])


def test_ratings_read_in_small_blocks_out_of_core_give_the_same_dataset(tmp_path):
    # Blocks of 5 * 32 bytes (a few lines each, so line numbers cross block ends) and
    # sorted runs of 3 rows merged out of core: the dataset and the bad lines named are
    # those of one whole read.
    folder = write_100k(tmp_path / "ml", RATINGS_100K, users=[1, 2], movies=[10, 11, 12, 13, 14])
    with open(folder / "u.data", "a") as f:
        f.write("1\t12\t7\t500\n")  # line 9: malformed
        f.write("3\t12\t4\t500\n")  # line 10: unknown user
    whole = prepare_movielens(folder, tmp_path / "a", test_fraction=0.3, num_shards=ONE_SHARD)
    options = PrepareOptions(test_fraction=0.3, num_shards=ONE_SHARD)
    policy = ErrorPolicy(options.on_error)
    source = MovieLensSource(folder, policy)
    blocks = prepare_impressions(source, tmp_path / "b", options, policy, chunk_rows=5, run_rows=3)
    assert blocks["spilled"] and blocks["skipped_examples"] == whole["skipped_examples"]
    assert "u.data, line 9" in whole["skipped_examples"]["malformed_rows"][0]
    for split in ("train", "test"):
        assert written(tmp_path / "b", split) == written(tmp_path / "a", split)
