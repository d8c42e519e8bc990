"""Crash-safe training: atomic files, SIGKILL then resume, the NaN stop keeping the last good model."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import widedeep.models  # noqa: F401  (registers the custom objects)
from tests.conftest import start_widedeep
from widedeep.checkpointing import epoch_seed
from widedeep.cli import EXIT_DIVERGED, main
from widedeep.safe_output import atomic_path, write_json
from widedeep.training import save_model

TINY = ["--num-users", "40", "--num-items", "30", "--num-impressions", "1500", "--max-length", "4"]
TRAIN = [
    "--model", "wide_deep", "--epochs", "3", "--batch-size", "64", "--hidden-units", "8",
    "--embedding-dim", "4", "--early-stopping", "1", "--logdir", "", "--seed", "5",
]  # fmt: skip
# At W&D's default MLP dropout (0.5): a resumed run must also continue the dropout layers'
# random streams. It did not while reading the best epoch's weights at resume rewound their
# seed-generator states (not part of `get_weights`) to the best epoch's (max abs weight
# difference 0.023 on this model); `TrainingBackup.load_best_weights` now puts them back.


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "data"
    assert main(["simulate", "--out", str(out), "--seed", "1", *TINY]) == 0
    return str(out)


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _weights(path: str) -> list[np.ndarray]:
    return keras.models.load_model(path).get_weights()


# ------------------------------------------------------------------ atomic files
def test_an_interrupted_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"auc": 0.7})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write('{"auc": 0.')  # half written when the crash comes
        raise RuntimeError("killed while saving")
    assert json.loads(path.read_text()) == {"auc": 0.7}
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left behind


def test_an_interrupted_model_save_leaves_the_previous_model(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = str(tmp_path / "model.keras")
    save_model(model, path)
    before = model.get_weights()
    model.layers[0].kernel.assign(np.ones((2, 1)))

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 truncated zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, path)
    monkeypatch.undo()
    for got, want in zip(_weights(path), before):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ kill and resume
PINNED_EPOCH_SEEDS = {
    (0, 0): 1484405855, (0, 1): 1982462498, (0, 2): 1570558271,
    (5, 0): 8411699, (5, 1): 1898245334, (5, 2): 1613061882,
}  # fmt: skip
"""`epoch_seed(seed, epoch)`, computed once: a resumed run, in another process (or on another
machine), must shuffle an epoch exactly as the interrupted run did to skip the batches it had
trained on. A change here makes every backup written before it resume on other batches."""

_EPOCH_SEEDS_SCRIPT = (
    "import json\n"
    "from widedeep.checkpointing import epoch_seed\n"
    "print(json.dumps([epoch_seed(s, e) for s in range(3) for e in range(10)]))"
)


def test_epoch_seeds_are_pinned_and_the_same_in_every_process():
    assert {key: epoch_seed(*key) for key in PINNED_EPOCH_SEEDS} == PINNED_EPOCH_SEEDS
    assert [epoch_seed(2**32 + 5, e) for e in range(3)] == [epoch_seed(5, e) for e in range(3)]
    here = [epoch_seed(s, e) for s in range(3) for e in range(10)]
    assert len(set(here)) == 30 and all(0 <= s < 2**31 for s in here)
    # Two fresh processes, each with its own string hashing, compute the same seeds.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _EPOCH_SEEDS_SCRIPT],
            env={**os.environ, "PYTHONPATH": root, "PYTHONHASHSEED": str(hash_seed)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for hash_seed in (1, 2)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        assert json.loads(out.strip().splitlines()[-1]) == here


def _wait_for_mid_epoch_checkpoint(backup: str, proc: subprocess.Popen, after: int, steps: int):
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        numbers = [
            int(m.group(1))
            for p in glob.glob(os.path.join(backup, "state-*.index"))
            if (m := re.search(r"state-(\d+)\.index$", p))
        ]
        if any(n > after and n % steps for n in numbers):
            return
        time.sleep(0.05)
    raise AssertionError(f"no mid-epoch checkpoint after step {after} (rc={proc.poll()})")


def test_sigkill_mid_epoch_then_rerun_ends_with_the_uninterrupted_weights(data_dir, tmp_path):
    reference, run = str(tmp_path / "reference"), str(tmp_path / "run")
    assert main(["train", "--data", data_dir, "--out", reference, *TRAIN]) == 0
    meta = _read_json(os.path.join(data_dir, "meta.json"))
    fit_rows = meta["splits"]["train"]["examples"] - round(
        meta["splits"]["train"]["examples"] * 0.1
    )
    steps = -(-fit_rows // 64)

    args = ["train", "--data", data_dir, "--out", run, *TRAIN, "--backup-every", "3"]
    proc = start_widedeep(args)
    try:
        _wait_for_mid_epoch_checkpoint(os.path.join(run, "backup"), proc, steps, steps)
        proc.send_signal(signal.SIGKILL)  # inside epoch 2 (of 3), possibly while saving
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(run, "model.keras"))

    assert main(args) == 0  # the same command resumes
    assert not os.path.exists(os.path.join(run, "backup"))  # deleted once the run finished
    for got, want in zip(
        _weights(os.path.join(run, "model.keras")), _weights(reference + "/model.keras")
    ):
        np.testing.assert_array_equal(got, want)
    ref_metrics = _read_json(os.path.join(reference, "metrics.json"))
    run_metrics = _read_json(os.path.join(run, "metrics.json"))
    for key in ("auc", "logloss", "validation_auc", "epochs_run", "best_epoch"):
        assert run_metrics[key] == ref_metrics[key], key


# ------------------------------------------------------------------ NaN stop
def test_a_diverging_run_keeps_the_last_good_model_and_exits_3(data_dir, tmp_path, capsys):
    run = str(tmp_path / "run")
    args = [*TRAIN, "--backup-every", "2", "--deep-learning-rate", "1e30"]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", data_dir, "--out", run, *args])
    assert exit_info.value.code == EXIT_DIVERGED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(r"epoch 1, step \d+", err[0]) and "learning rate" in err[0]
    metrics = _read_json(os.path.join(run, "metrics.json"))
    diverged = metrics["diverged"]
    assert diverged["epoch"] == 1 and diverged["step"] >= 1
    assert diverged["model_saved_at"]["global_step"] < diverged["step"]
    weights = _weights(os.path.join(run, "model.keras"))
    assert all(np.isfinite(w).all() for w in weights)
    assert not os.path.exists(os.path.join(run, "backup"))


# ------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_mid_epoch_saves_the_position_and_says_how_to_resume(
    data_dir, tmp_path, monkeypatch
):
    from widedeep import training

    def interrupt(self, batch, logs=None):
        if batch >= 4:  # batches 1, 3, 5, ...: the callbacks run after every 2 steps
            raise KeyboardInterrupt  # as Python raises it on SIGINT, between two executions

    monkeypatch.setattr(training.StopOnNonFiniteLoss, "on_train_batch_end", interrupt)
    config = training.TrainConfig(
        data=data_dir, out=str(tmp_path / "run"), epochs=2, batch_size=64, logdir=None,
        verbose=0, backup_every=0, hyperparameters={"hidden_units": [8]}, steps_per_execution=2,
    )  # fmt: skip
    with pytest.raises(training.TrainingInterrupted, match="rerun the same command to resume"):
        training.train(config)
    backup = config.resolved_backup_dir()
    with open(os.path.join(backup, "checkpoint")) as f:
        assert 'model_checkpoint_path: "state-6"' in f.read()  # 6 steps applied, saved on Ctrl-C
    assert not os.path.exists(os.path.join(config.out, "model.keras"))
