"""`widedeep train` / `evaluate` refuse bad input with one line and exit status 2, before training."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile

import pytest

from widedeep.cli import EXIT_USAGE, main

TINY = ["--num-users", "30", "--num-items", "20", "--num-impressions", "600", "--max-length", "3"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("inputs") / "data"
    assert main(["simulate", "--out", str(out), "--seed", "2", *TINY]) == 0
    return str(out)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def _train(data_dir: str, out: str, *flags: str) -> list[str]:
    return ["train", "--data", data_dir, "--out", out, "--epochs", "1", "--logdir", "", *flags]


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--model", "dfn", "--use-fm", "flase"], "expected true or false, got 'flase'"),
        (["--wide-learning-rate", "-0.1"], "--wide-learning-rate: expected a number > 0"),
        (["--deep-learning-rate", "0"], "--deep-learning-rate: expected a number > 0"),
        (["--deep-learning-rate", "nan"], "--deep-learning-rate: expected a number > 0"),
        (["--wide-initial-accumulator=-1e-6"], "expected a number >= 0, got '-1e-6'"),
        (["--wide-l1", "-1"], "--wide-l1: expected a number >= 0"),
        (["--loss-weights", "1,-1,10"], "--loss-weights: expected three non-negative"),
        (["--loss-weights", "0,0,0"], "not all 0"),
        (["--loss-weights", "1,inf,1"], "--loss-weights: expected three non-negative"),
        (["--dropout", "1.5"], "--dropout: expected a number in [0, 1)"),
    ],
)
def test_out_of_range_flags_are_refused(data_dir, tmp_path, capsys, flags, expected):
    out = tmp_path / "run"
    assert main(_train(data_dir, str(out), *flags)) == EXIT_USAGE
    assert expected in _error_line(capsys)
    assert not out.exists()


def test_bool_flags_read_true_and_false():
    from widedeep.cli import build_parser

    parser = build_parser()
    base = ["train", "--data", "d", "--out", "o", "--model", "dfn"]
    assert parser.parse_args([*base, "--use-fm", "False"]).use_fm is False
    assert parser.parse_args([*base, "--use-fm", "true"]).use_fm is True


def test_an_existing_run_is_refused_unless_overwrite(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    assert main(_train(data_dir, str(out))) == EXIT_USAGE
    line = _error_line(capsys)
    assert f"--out {out} already holds a run (metrics.json)" in line and "--overwrite" in line
    assert (out / "metrics.json").read_text() == "{}"


@pytest.mark.parametrize("flag", ["--out", "--logdir", "--backup-dir"])
def test_an_output_that_is_a_file_is_refused(data_dir, tmp_path, capsys, flag):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    outputs = {"--out": str(tmp_path / "run"), "--logdir": "", "--backup-dir": None}
    outputs[flag] = str(a_file)
    args = ["train", "--data", data_dir, "--epochs", "1"]
    for name, value in outputs.items():
        if value is not None:
            args += [name, value]
    assert main(args) == EXIT_USAGE
    assert f"{flag} {a_file}: is a file, not a directory" in _error_line(capsys)


def test_an_unwritable_out_is_refused(data_dir, tmp_path, capsys, monkeypatch):
    # Root ignores permission bits, so the refusal of the write probe is simulated.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    out = tmp_path / "read_only"
    assert main(_train(data_dir, str(out))) == EXIT_USAGE
    assert f"--out {out}: cannot write there (Permission denied)" in _error_line(capsys)


def _copy(data_dir: str, tmp_path) -> str:
    copy = str(tmp_path / "copy")
    shutil.copytree(data_dir, copy)
    return copy


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_truncated_shard_is_named(data_dir, tmp_path, capsys, command):
    copy = _copy(data_dir, tmp_path)
    with open(os.path.join(copy, "meta.json")) as f:
        files = [os.path.join(copy, name) for name in json.load(f)["splits"]["test"]["files"]]
    shard = max(files, key=os.path.getsize)
    size = os.path.getsize(shard)
    with open(shard, "r+b") as f:
        f.truncate(size - 7)
    if command == "train":
        args = _train(copy, str(tmp_path / "run"))
    else:
        model = tmp_path / "model.keras"
        model.write_bytes(b"")  # the data is checked before the model is read
        args = ["evaluate", "--model", str(model), "--data", copy]
    assert main(args) == EXIT_USAGE
    line = _error_line(capsys)
    assert f"damaged shard {shard}" in line and f"the file ends at byte {size - 7}" in line


def test_a_meta_json_without_example_counts_is_refused(data_dir, tmp_path, capsys):
    copy = _copy(data_dir, tmp_path)
    path = os.path.join(copy, "meta.json")
    with open(path) as f:
        meta = json.load(f)
    del meta["splits"]["train"]["examples"]
    with open(path, "w") as f:
        json.dump(meta, f)
    assert main(_train(copy, str(tmp_path / "run"))) == EXIT_USAGE
    assert "split 'train' has no 'examples' count" in _error_line(capsys)
