"""Faults of the machine: a full disk, a damaged backup, two runs into one directory.

No root needed: a full disk is a writer patched to raise `ENOSPC` (Python's `OSError`, or
TensorFlow's `ResourceExhaustedError` as its file writers raise it) after writing part of
its file; a damaged backup is a checkpoint file cut short; two runs are two processes.
Each test checks the message, the exit code and what is left on disk, then that the next
run works.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import shutil
import signal
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import widedeep.models  # noqa: F401  (registers the custom objects)
from tests.conftest import start_widedeep
from widedeep import export as export_module
from widedeep.cli import EXIT_NO_SPACE, EXIT_USAGE, main
from widedeep.data.dataset_format import DatasetError
from widedeep.data.reader import load_dataset_dir
from widedeep.directory_lock import LOCK_FILE, DirectoryBusyError, directory_lock
from widedeep.safe_output import NoSpaceError, atomic_path, is_out_of_space, write_json

TINY = ["--num-users", "40", "--num-items", "30", "--num-impressions", "1500", "--max-length", "4"]
TRAIN = [
    "--model", "wide_deep", "--epochs", "1", "--batch-size", "64", "--hidden-units", "8",
    "--embedding-dim", "4", "--logdir", "", "--seed", "5", "--backup-every", "0",
]  # fmt: skip
EVERY_2 = ["--steps-per-execution", "2", "--backup-every", "2"]  # checkpoints at steps 2, 4, ...
NO_SPACE = re.compile(
    r"widedeep: error: no space left on device while writing (?P<path>\S+) "
    r"\(about (?P<mb>[\d.]+) MB needed\); free space or choose another (?P<flag>--[a-z-]+)$"
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "data"
    assert main(["simulate", "--out", str(out), "--seed", "1", *TINY]) == 0
    return str(out)


@pytest.fixture(scope="module")
def model_file(data_dir, tmp_path_factory):
    from widedeep.training import build_model, compile_model, save_model

    schema, _ = load_dataset_dir(data_dir)
    model = compile_model(build_model(schema, "wide_deep", hidden_units=[8], embedding_dim=4))
    path = str(tmp_path_factory.mktemp("model") / "model.keras")
    save_model(model, path)
    return path


def _no_space_line(capsys) -> re.Match:
    """The one line a full disk prints (after any progress lines), parsed."""
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("widedeep:")]
    assert len(err) == 1, err
    match = NO_SPACE.match(err[0])
    assert match, err[0]
    return match


def _enospc(path: str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def _tf_enospc(path: str) -> tf.errors.ResourceExhaustedError:
    # As TensorFlow's file writers report it: "<path>; No space left on device".
    return tf.errors.ResourceExhaustedError(None, None, f"{path}; {os.strerror(errno.ENOSPC)}")


def _hidden(folder) -> list[str]:
    """Temporary or lock files left in `folder`."""
    return [name for name in os.listdir(folder) if name.startswith(".")]


def _size(folder: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(folder)
        for name in names
    )


# ------------------------------------------ helpers of widedeep.safe_output and directory_lock
def test_out_of_space_is_recognised_through_wrappers():
    assert is_out_of_space(_enospc("x"))
    assert is_out_of_space(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)))
    assert is_out_of_space(_tf_enospc("a/part-0.tfrecord"))
    try:
        try:
            raise _enospc("x")
        except OSError as inner:
            raise RuntimeError("saving failed") from inner
    except RuntimeError as outer:
        assert is_out_of_space(outer)
    assert is_out_of_space(OSError("27286 requested and 19952 written"))  # NumPy's tofile
    assert not is_out_of_space(OSError(errno.EACCES, os.strerror(errno.EACCES)))
    assert not is_out_of_space(tf.errors.ResourceExhaustedError(None, None, "OOM on GPU"))


def test_no_space_message_names_the_path_and_the_size():
    error = NoSpaceError("runs/a", 3 * 2**20, "--out")
    assert str(error) == (
        "no space left on device while writing runs/a (about 3.0 MB needed); free space or "
        "choose another --out"
    )
    assert "(about 120 MB needed)" in str(NoSpaceError("x", 120 * 2**20))


def test_atomic_path_turns_a_full_disk_into_one_error_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"auc": 0.7})
    expected = f"while writing {path} \\(about 0.5 MB"
    with pytest.raises(NoSpaceError, match=expected), atomic_path(path, 2**19) as tmp:
        with open(tmp, "w") as f:
            f.write('{"auc": 0.')
        raise _enospc(tmp)
    assert path.read_text() == '{\n  "auc": 0.7\n}\n'
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_write_json_leaves_no_partial_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"auc": 0.7})
    before = path.read_bytes()
    # The bad value sits after values that serialise: a writer streaming to the file
    # would have written half an object by then.
    payload = {"auc": 0.8, "history": [0.1, np.float32(0.2)], "last": {"bad": object()}}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        write_json(path, payload)
    assert path.read_bytes() == before
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        write_json(tmp_path / "new.json", payload)
    assert os.listdir(tmp_path) == ["metrics.json"]  # no partial file, no temporary one


def test_meta_json_is_written_last_through_the_one_json_writer(tmp_path, monkeypatch):
    from tests.test_records import ROWS, tiny_schema
    from widedeep.data import writer as writer_module
    from widedeep.data.writer import DatasetWriter

    written = []
    real = writer_module.write_json

    def spy(path, payload, *args):
        written.append(os.path.basename(path))
        return real(path, payload, *args)

    monkeypatch.setattr(writer_module, "write_json", spy)
    out = tmp_path / "data"
    writer = DatasetWriter(out, {"train": 1, "test": 1})
    writer.write("train", ROWS)
    meta = writer.close(tiny_schema(), {"source": "test"}, files={"roles.json": {"a": 1}})
    assert written == ["roles.json", "schema.json", "meta.json"]
    assert json.loads((out / "meta.json").read_text()) == meta
    # A meta that fails to serialise half-way leaves no meta.json: the dataset is unfinished.
    writer = DatasetWriter(out / "bad", {"train": 1, "test": 1})
    writer.write("train", ROWS)
    with pytest.raises(TypeError, match="not JSON serialisable"):
        writer.close(tiny_schema(), {"source": "test", "zzz": {"bad": object()}})
    assert "meta.json" not in os.listdir(out / "bad")
    assert _hidden(out / "bad") == []
    with pytest.raises(DatasetError, match="no meta.json"):
        load_dataset_dir(out / "bad")


def test_atomic_path_clears_what_killed_writers_left(tmp_path):
    no_such_pid = 999_999_999  # above Linux's largest pid
    (tmp_path / f".model.keras.{no_such_pid}-0123abcd.tmp.keras").write_bytes(b"PK half")
    (tmp_path / f".model.keras.{no_such_pid}-0123abcd.old").mkdir()
    running = f".model.keras.{os.getpid()}-0123abcd.tmp.keras"  # a writer still at work
    (tmp_path / running).write_bytes(b"PK in progress")
    other = f".export.{no_such_pid}-0123abcd.old"  # another target's: left to its writer
    (tmp_path / other).mkdir()
    with atomic_path(tmp_path / "model.keras") as tmp, open(tmp, "wb") as f:
        f.write(b"PK whole")
    assert sorted(os.listdir(tmp_path)) == sorted([other, running, "model.keras"])


def test_atomic_path_replaces_a_directory_whole(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "old.pb").write_text("old")
    with atomic_path(out) as tmp:
        os.mkdir(tmp)
        with open(os.path.join(tmp, "new.pb"), "w") as f:
            f.write("new")
    assert os.listdir(out) == ["new.pb"] and os.listdir(tmp_path) == ["export"]


def test_a_directory_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    folder = tmp_path / "run"
    with directory_lock(folder, "--out", "train"):
        assert (folder / LOCK_FILE).read_text() == f"{os.getpid()} train"
        # A second open file of the same lock conflicts, in this process as in another.
        with pytest.raises(DirectoryBusyError) as refused, directory_lock(folder, "--out"):
            pass
    assert str(refused.value) == (
        f"--out {folder} is in use by another process (pid {os.getpid()}, widedeep train): "
        "wait for it to end or choose another --out"
    )
    assert not folder.exists()  # created by the lock, left empty: removed with it
    with directory_lock(folder, "--out"):  # free again
        pass


# ------------------------------------------------------------------ a full disk
def _fill_after(writes: int, make_error):
    """A `tf.io.TFRecordWriter` that fills the disk at its `writes`-th record (over all files)."""
    real = tf.io.TFRecordWriter
    count = [0]

    class FillingWriter:
        def __init__(self, path, *args, **kwargs):
            self.path, self._writer = path, real(path, *args, **kwargs)

        def write(self, record):
            count[0] += 1
            if count[0] == writes:
                self._writer.write(record[: len(record) // 2])
                self._writer.flush()
                raise make_error(self.path)
            self._writer.write(record)

        def flush(self):
            self._writer.flush()

        def close(self):
            self._writer.close()

    return FillingWriter


def test_simulate_into_a_full_disk(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sim"
    monkeypatch.setattr(tf.io, "TFRecordWriter", _fill_after(3, _tf_enospc))
    args = ["simulate", "--out", str(out), "--seed", "1", *TINY]
    assert main(args) == EXIT_NO_SPACE
    error = _no_space_line(capsys)
    assert error["path"] == str(out) and error["flag"] == "--out"
    assert os.listdir(tmp_path) == []  # no shard, no schema, no lock: the directory is gone
    monkeypatch.undo()  # space freed
    assert main(args) == 0
    load_dataset_dir(out)
    assert _hidden(out) == []
    # "About" the size of the dataset (rows written so far, extrapolated).
    assert float(error["mb"]) == pytest.approx(_size(str(out)) / 2**20, abs=0.11)


def test_a_dataset_writer_removes_what_it_wrote_when_the_disk_fills(tmp_path, monkeypatch):
    from tests.test_records import ROWS, tiny_schema
    from widedeep.data import writer as writer_module
    from widedeep.data.writer import DatasetWriter

    out = tmp_path / "data"
    writer = DatasetWriter(out, {"train": 2, "test": 1}, expected_rows=3 * len(ROWS))
    writer.write("train", ROWS)  # a first chunk reaches the disk
    monkeypatch.setattr(tf.io, "TFRecordWriter", _fill_after(1, _tf_enospc))
    with pytest.raises(NoSpaceError, match=f"while writing {out} "):
        writer.write("test", ROWS)  # no `with`: the writer cleans up by itself
    assert os.listdir(out) == []
    monkeypatch.undo()
    real = writer_module.write_json

    def fill_at_meta(path, payload, *args):  # everything else of the dataset is written
        if path.endswith("meta.json"):
            raise _enospc(path)
        return real(path, payload, *args)

    monkeypatch.setattr(writer_module, "write_json", fill_at_meta)
    writer = DatasetWriter(out, {"train": 2, "test": 1})
    writer.write("train", ROWS)
    with pytest.raises(NoSpaceError):
        writer.close(tiny_schema(), files={"config.json": {"a": 1}})
    assert os.listdir(out) == []


def test_an_unfinished_dataset_is_replaced_without_overwrite(data_dir, tmp_path, capsys):
    out = tmp_path / "sim"
    shutil.copytree(data_dir, out)
    os.remove(out / "meta.json")  # as a killed `simulate` leaves it
    assert main(["simulate", "--out", str(out), "--seed", "2", *TINY]) == 0
    load_dataset_dir(out)
    assert main(["simulate", "--out", str(out), "--seed", "2", *TINY]) == EXIT_USAGE
    assert "already holds a dataset" in capsys.readouterr().err  # a finished one is kept


def _log_csv(folder) -> str:
    rng = np.random.default_rng(0)
    lines = ["who,sku,ts,clicked"]
    for t in range(400):
        lines.append(f"{rng.integers(0, 20)},{rng.integers(0, 15)},{1000 + t},{rng.integers(0, 2)}")
    path = os.path.join(folder, "log.csv")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_prepare_into_a_full_disk(tmp_path, monkeypatch, capsys):
    from widedeep.data import writer

    real = writer.write_table

    def fill_in_table(out_dir, name, columns):
        if name == "dislike_events":  # the last table: shards and two tables are written
            os.makedirs(os.path.join(out_dir, "tables", name))
            first = os.path.join(out_dir, "tables", name, f"{next(iter(columns))}.npy")
            with open(first, "wb") as f:
                f.write(b"\x93NUMPY half")
            raise _enospc(first)
        return real(out_dir, name, columns)

    monkeypatch.setattr(writer, "write_table", fill_in_table)
    out = tmp_path / "data"
    args = ["prepare", "log", "--log", _log_csv(tmp_path), "--user", "who", "--item", "sku",
            "--time", "ts", "--label", "clicked", "--out", str(out), "--max-length", "4"]  # fmt: skip
    assert main(args) == EXIT_NO_SPACE
    error = _no_space_line(capsys)
    assert error["path"] == str(out)
    assert sorted(os.listdir(tmp_path)) == ["log.csv"]
    monkeypatch.undo()
    assert main(args) == 0
    _, meta = load_dataset_dir(out)
    assert os.path.isfile(out / "prepare_config.json") and _hidden(out) == []


def test_a_killed_prepare_leaves_nothing_that_blocks_the_next(tmp_path):
    import hashlib

    out = tmp_path / "data"
    os.makedirs(out / "train")
    (out / "train" / "part-00000-of-00008.tfrecord").write_bytes(b"half a shard")
    key = hashlib.sha1(str(out).encode()).hexdigest()[:12]
    stale = tmp_path / f".widedeep-prepare-{key}-x1y2"  # the sort's scratch, never removed
    os.makedirs(stale)
    (stale / "time").write_bytes(b"\0" * 64)
    other = tmp_path / ".widedeep-prepare-0123456789ab-x1y2"  # another dataset's, in use
    os.makedirs(other)
    args = ["prepare", "log", "--log", _log_csv(tmp_path), "--user", "who", "--item", "sku",
            "--time", "ts", "--label", "clicked", "--out", str(out)]  # fmt: skip
    assert main(args) == 0  # no --overwrite needed: there was no dataset
    load_dataset_dir(out)
    assert not stale.exists() and other.exists()


def test_training_into_a_full_disk_keeps_the_backup_and_resumes(
    data_dir, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    backup = run / "backup"
    real = tf.train.CheckpointManager.save
    saves = [0]

    def fill_on_third_save(self, checkpoint_number=None, **kwargs):
        saves[0] += 1
        if saves[0] < 3:
            return real(self, checkpoint_number=checkpoint_number, **kwargs)
        prefix = os.path.join(self.directory, f"state-{checkpoint_number}")
        os.makedirs(prefix + "_temp", exist_ok=True)
        with open(prefix + ".data-00000-of-00001", "wb") as f:
            f.write(b"half a checkpoint")
        raise _tf_enospc(prefix + ".data-00000-of-00001")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", fill_on_third_save)
    args = ["train", "--data", data_dir, "--out", str(run), *TRAIN, *EVERY_2]
    assert main(args) == EXIT_NO_SPACE
    error = _no_space_line(capsys)
    assert error["path"] == str(backup)
    # The two checkpoints before it, nothing half written, no result, no lock.
    assert sorted(glob.glob(str(backup / "state-*"))) == sorted(
        str(backup / f"state-{n}.{ext}") for n in (0, 2) for ext in ("index", "data-00000-of-00001")
    )
    assert sorted(os.listdir(run)) == ["backup"]
    monkeypatch.undo()
    assert main(args) == 0
    assert sorted(os.listdir(run)) == ["config.json", "metrics.json", "model.keras"]


@pytest.mark.parametrize("failing", ["model.keras", "metrics.json"])
def test_results_into_a_full_disk_leave_no_run_files(
    data_dir, tmp_path, monkeypatch, capsys, failing
):
    from widedeep import training

    run = tmp_path / "run"
    real_write_json = training.write_json

    def half_file(path):  # as a full disk cuts a write short
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a file")
        raise _enospc(path)

    if failing == "model.keras":  # `save_model` hands Keras its temporary path
        monkeypatch.setattr(keras.Model, "save", lambda self, path, *a, **k: half_file(path))
    else:  # after model.keras was written

        def write_json(path, payload, *args):
            if path.endswith("metrics.json"):
                with atomic_path(path) as tmp:
                    half_file(tmp)
            real_write_json(path, payload, *args)

        monkeypatch.setattr(training, "write_json", write_json)
    args = ["train", "--data", data_dir, "--out", str(run), *TRAIN]
    assert main(args) == EXIT_NO_SPACE
    assert _no_space_line(capsys)["path"] == str(run / failing)
    assert sorted(os.listdir(run)) == ["backup"]  # the finished training, to resume from
    monkeypatch.undo()
    assert main(args) == 0
    assert sorted(os.listdir(run)) == ["config.json", "metrics.json", "model.keras"]


def test_predict_into_a_full_disk(data_dir, model_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scores.csv"
    real = export_module._CsvWriter.write
    batches = [0]

    def fill_at_last_batch(self, batch):
        batches[0] += 1
        real(self, batch)
        if batches[0] == 2:  # of 2 (the reader's groups of records hold 256 rows)
            self._file.flush()
            raise _enospc(self._file.name)

    monkeypatch.setattr(export_module._CsvWriter, "write", fill_at_last_batch)
    args = ["predict", "--model", model_file, "--data", data_dir, "--out", str(out),
            "--batch-size", "64"]  # fmt: skip
    assert main(args) == EXIT_NO_SPACE
    error = _no_space_line(capsys)
    assert error["path"] == str(out)
    assert os.listdir(tmp_path) == []  # no partial predictions, no temporary file
    monkeypatch.undo()
    assert main(args) == 0
    _, meta = load_dataset_dir(data_dir)
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + meta["splits"]["test"]["examples"]
    assert float(error["mb"]) == pytest.approx(0.1)  # ~15 KB, the smallest size said


def test_export_into_a_full_disk_keeps_the_previous_export(
    model_file, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "serving" / "1"
    assert main(["export", "--model", model_file, "--out", str(out)]) == 0
    before = {path: os.path.getsize(path) for path in glob.glob(f"{out}/**", recursive=True)}
    real = tf.saved_model.save  # what Keras' ExportArchive.write_out calls

    def fill(obj, export_dir, **kwargs):
        os.makedirs(os.path.join(export_dir, "variables"))
        with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
            f.write(b"half a graph")
        raise _tf_enospc(os.path.join(export_dir, "saved_model.pb"))

    monkeypatch.setattr(tf.saved_model, "save", fill)
    args = ["export", "--model", model_file, "--out", str(out), "--overwrite"]
    assert main(args) == EXIT_NO_SPACE
    assert _no_space_line(capsys)["path"] == str(out)
    after = {path: os.path.getsize(path) for path in glob.glob(f"{out}/**", recursive=True)}
    assert after == before and _hidden(out.parent) == []
    other = tmp_path / "new" / "ctr" / "1"
    assert main(["export", "--model", model_file, "--out", str(other)]) == EXIT_NO_SPACE
    assert not (tmp_path / "new").exists()  # the parents it made are removed too
    monkeypatch.setattr(tf.saved_model, "save", real)
    assert main(["export", "--model", model_file, "--out", str(other)]) == 0
    assert os.path.isfile(other / "saved_model.pb")


# ------------------------------------------------------------------ a damaged backup
def _weights(path) -> list[np.ndarray]:
    return keras.models.load_model(path).get_weights()


def _truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def test_a_damaged_newest_checkpoint_resumes_from_the_one_before(
    data_dir, tmp_path, monkeypatch, capsys
):
    from widedeep import training

    reference, run = tmp_path / "reference", tmp_path / "run"
    settings = [*TRAIN, *EVERY_2, "--early-stopping", "0"]
    assert main(["train", "--data", data_dir, "--out", str(reference), *settings]) == 0

    def interrupt(self, batch, logs=None):
        if batch >= 7:  # after 8 steps: checkpoints at 0, 2, 4, 6 and, on Ctrl-C, 8
            raise KeyboardInterrupt

    monkeypatch.setattr(training.StopOnNonFiniteLoss, "on_train_batch_end", interrupt)
    args = ["train", "--data", data_dir, "--out", str(run), *settings]
    assert main(args) == 130
    monkeypatch.undo()
    backup = run / "backup"
    assert "state-8" in (backup / "checkpoint").read_text()
    shutil.copytree(run, tmp_path / "all_damaged")
    _truncate(str(backup / "state-8.data-00000-of-00001"))  # a crash or full disk mid-write
    capsys.readouterr()

    assert main(args) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "widedeep:" in line]
    assert err == [
        f"widedeep: backup checkpoint(s) in {backup} that do not read (state-8: IndexError "
        "Read less bytes than requested); resuming from state-6"
    ]
    for got, want in zip(_weights(run / "model.keras"), _weights(reference / "model.keras")):
        np.testing.assert_array_equal(got, want)  # as if never interrupted

    # No checkpoint left that reads: one line naming the backup and how to start afresh.
    damaged = tmp_path / "all_damaged"
    for path in glob.glob(str(damaged / "backup" / "state-*.data-*")):
        _truncate(path)
    args = ["train", "--data", data_dir, "--out", str(damaged), *settings]
    assert main(args) == EXIT_USAGE
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"widedeep: error: no checkpoint in the backup {damaged}/backup reads")
    assert line.endswith("add --overwrite to start afresh")
    assert main([*args, "--overwrite"]) == 0


def test_a_backup_skips_a_damaged_best_epoch_and_an_unreadable_index(tmp_path, capsys):
    from tests.conftest import make_tiny_schema
    from widedeep.checkpointing import TrainingBackup
    from widedeep.training import build_model, compile_model

    model = compile_model(build_model(make_tiny_schema(), "wide_deep", hidden_units=[4]))
    with pytest.raises(ValueError, match="max_to_keep must be >= 2"):
        TrainingBackup(str(tmp_path), model, "settings", max_to_keep=1)
    backup = TrainingBackup(str(tmp_path), model, "settings")
    weight = model.trainable_variables[0]
    for step in (1, 2, 3):
        model.deep_optimizer.iterations.assign(step)
        weight.assign(np.full(weight.shape, step, "float32"))
        record = {"epochs_done": step}
        if step == 3:
            record["best_checkpoint"] = backup.save_best_weights(epoch=2)
        backup.save(record)
    _truncate(glob.glob(str(tmp_path / "best-epoch-2.data-*"))[0])  # named by state-3 only
    (tmp_path / "checkpoint").write_text("model_checkpoint_path: {")  # the index is garbled
    weight.assign(np.zeros(weight.shape, "float32"))
    capsys.readouterr()
    record = TrainingBackup(str(tmp_path), model, "settings").restore()
    assert record["epochs_done"] == 2 and record["global_step"] == 2
    np.testing.assert_array_equal(weight.numpy(), np.full(weight.shape, 2, "float32"))
    assert "(state-3: " in capsys.readouterr().err


# ------------------------------------------------------------------ two runs, one directory
def test_two_trains_into_one_out_exactly_one_runs(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", data_dir, "--out", str(run), *TRAIN, *EVERY_2, "--epochs", "500",
            "--early-stopping", "0"]  # fmt: skip
    first = start_widedeep(args)
    try:
        deadline = time.monotonic() + 240
        while not glob.glob(str(run / "backup" / "state-2.index")):  # training, lock held
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        started = time.perf_counter()
        assert main(args) == EXIT_USAGE
        assert time.perf_counter() - started < 5  # at once
        assert capsys.readouterr().err.strip() == (
            f"widedeep: error: --out {run} is in use by another process (pid {first.pid}, "
            "widedeep train): wait for it to end or choose another --out"
        )
        assert first.poll() is None  # the first one trains on
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    # A killed run's lock blocks nobody: its own rerun goes on.
    assert main([*args[:-4], "--epochs", "1", "--overwrite"]) == 0
    assert _hidden(run) == []


@pytest.mark.parametrize("command", ["simulate", "prepare"])
def test_a_dataset_being_written_is_locked(data_dir, tmp_path, capsys, command):
    out = tmp_path / "data"
    if command == "simulate":
        args = ["simulate", "--out", str(out), "--overwrite", *TINY]
    else:
        args = ["prepare", "log", "--log", _log_csv(tmp_path), "--user", "who", "--item", "sku",
                "--time", "ts", "--label", "clicked", "--out", str(out), "--overwrite"]  # fmt: skip
    shutil.copytree(data_dir, out)
    with directory_lock(out, "--out", "simulate"):  # another process simulating into it
        assert main(args) == EXIT_USAGE
    assert f"--out {out} is in use by another process (pid {os.getpid()}, widedeep simulate)" in (
        capsys.readouterr().err
    )
    load_dataset_dir(out)  # --overwrite deleted nothing
