"""The command line end to end on tiny simulated data, and its one-line errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from widedeep.cli import main

TINY = ["--num-users", "80", "--num-items", "60", "--num-impressions", "4000", "--max-length", "5"]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "data"
    assert main(["simulate", "--out", str(out), "--seed", "3", *TINY]) == 0
    return out


def test_simulate_writes_a_dataset_directory(sim_dir):
    meta = json.loads((sim_dir / "meta.json").read_text())
    assert 0.5 < meta["oracle_auc"] <= 1.0
    assert meta["splits"]["train"]["examples"] + meta["splits"]["test"]["examples"] == 4000
    assert (sim_dir / "schema.json").is_file()


def test_simulate_with_an_empty_test_split_says_so(tmp_path, capsys):
    out = tmp_path / "data"
    args = ["simulate", "--out", str(out), "--num-users", "4", "--num-items", "4"]
    assert main([*args, "--num-impressions", "1"]) == 0
    printed = capsys.readouterr().out
    assert "(train 1, test 0)" in printed
    assert "the test split has no impressions, so it has no oracle AUC" in printed


@pytest.mark.parametrize("model", ["wide_deep", "dfn"])
def test_train_then_evaluate(sim_dir, tmp_path, capsys, model):
    run = tmp_path / "run"
    logdir = tmp_path / "logs"
    args = [
        "train",
        "--data",
        str(sim_dir),
        "--model",
        model,
        "--out",
        str(run),
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--logdir",
        str(logdir),
        "--hidden-units",
        "16",
        "--json",
    ]
    if model == "dfn":
        args += ["--model-dim", "8", "--num-heads", "2", "--use-fm", "false"]
    assert main(args) == 0
    trained = _last_json(capsys.readouterr().out)
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("auc", "logloss", "gauc", "examples_per_sec"):
        assert key in metrics
    assert metrics["auc"] == pytest.approx(trained["auc"])
    # One epoch learns something: measured test AUC 0.710 (wide_deep) and 0.707 (dfn), the
    # oracle's 0.923; log loss 0.601 and 0.600 against the constant predictor's 0.648.
    assert metrics["auc"] > 0.65
    ctr = metrics["ctr"]
    assert metrics["logloss"] < -(ctr * math.log(ctr) + (1 - ctr) * math.log(1 - ctr)) - 0.02
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == model
    if model == "dfn":
        assert config["hyperparameters"]["use_fm"] is False
        assert config["feedback_weights"] == [1.0, 1.0, 1.0]  # DFN's default (README)
    # TensorBoard: train and validation scalars, optimizer learning rates.
    runs = os.listdir(logdir)
    assert len(runs) == 1
    assert {"train", "validation", "optimizers"} <= set(os.listdir(logdir / runs[0]))

    evaluate = ["evaluate", "--model", str(run / "model.keras"), "--data", str(sim_dir)]
    assert main([*evaluate, "--json"]) == 0
    evaluated = _last_json(capsys.readouterr().out)
    for key in ("auc", "logloss", "gauc"):
        assert evaluated[key] == pytest.approx(metrics[key], rel=1e-5)


def test_train_ends_with_a_plain_summary(sim_dir, tmp_path, capsys):
    """Without --json, train and evaluate end with sentences that carry the metrics.json numbers."""
    run = tmp_path / "run"
    argv = ["train", "--data", str(sim_dir), "--out", str(run), "--epochs", "1"]
    assert main([*argv, "--logdir", str(tmp_path / "logs"), "--hidden-units", "8"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    summary = out[out.index("Trained wide_deep") :].splitlines()
    assert summary == [
        f"Trained wide_deep (1 epoch, best 1) in {metrics['train_seconds']:.0f} s. Test AUC "
        f"{metrics['auc']:.4f}, GAUC {metrics['gauc']:.4f}, log loss {metrics['logloss']:.4f} on "
        f"{metrics['examples']:,} impressions (the simulator's oracle: AUC "
        f"{metrics['oracle_auc']:.4f}).",
        f"Model: {run / 'model.keras'} (metrics.json and config.json beside it; --json prints "
        "the metrics).",
        f"Training curves: tensorboard --logdir {tmp_path / 'logs'}",
    ]
    assert "{" not in out
    assert main(["evaluate", "--model", str(run / "model.keras"), "--data", str(sim_dir)]) == 0
    assert capsys.readouterr().out == (
        f"{run / 'model.keras'} on the test split: AUC {metrics['auc']:.4f}, GAUC "
        f"{metrics['gauc']:.4f}, log loss {metrics['logloss']:.4f} on {metrics['examples']:,} "
        "impressions.\n"
    )


def _last_json(text: str) -> dict:
    """The JSON object printed last (progress bars may precede it)."""
    start = text.rfind("\n{\n") + 1 if not text.startswith("{") else 0
    return json.loads(text[start:])


def _one_line_error(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def test_missing_data_directory(tmp_path, capsys):
    _one_line_error(
        ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")], capsys, "nope"
    )


def test_malformed_schema(sim_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(sim_dir, bad)
    (bad / "schema.json").write_text('{"categorical": [{"name": "user_id", "dtype": "int8"}]}')
    _one_line_error(
        ["train", "--data", str(bad), "--out", str(tmp_path / "run")],
        capsys,
        "schema.json",
        "user_id",
    )


def test_feature_missing_from_the_data_is_named(sim_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(sim_dir, bad)
    schema = json.loads((bad / "schema.json").read_text())
    schema["numeric"].append({"name": "watch_time", "mean": 0.0, "std": 1.0})
    (bad / "schema.json").write_text(json.dumps(schema))
    _one_line_error(
        ["train", "--data", str(bad), "--out", str(tmp_path / "run")], capsys, "watch_time"
    )


def test_unknown_flag(capsys):
    _one_line_error(
        ["train", "--data", "x", "--out", "y", "--learning-speed", "3"], capsys, "--learning-speed"
    )


def test_dfn_flag_on_other_model(sim_dir, tmp_path, capsys):
    _one_line_error(
        [
            "train",
            "--data",
            str(sim_dir),
            "--out",
            str(tmp_path / "r"),
            "--model",
            "wide",
            "--num-heads",
            "2",
        ],
        capsys,
        "--num-heads",
    )


def _widedeep_process(code: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter on this checkout, with TensorFlow's logs not set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WIDEDEEP_DEBUG", "TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": os.getcwd()},
        timeout=120,
        check=False,
    )


def test_console_script_reports_without_traceback(tmp_path):
    missing = tmp_path / "m.keras"
    out = subprocess.run(
        [sys.executable, "-m", "widedeep.cli", "evaluate", "--model", str(missing), "--data", "x"],
        capture_output=True,
        text=True,
        # As a user runs it: the suite's own TF_CPP_MIN_LOG_LEVEL (conftest) not inherited.
        env={
            **{k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)},
            "PYTHONPATH": os.getcwd(),
        },
        timeout=120,
        check=False,
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.startswith("widedeep:")]
    assert lines == [f"widedeep: error: no such model file: {missing}"]
    assert "Traceback" not in out.stderr
    if not os.path.exists("/proc/driver/nvidia"):  # where E lines are kept on purpose
        # The command quiets TensorFlow before importing it: its one line is all of stderr.
        assert out.stderr == f"widedeep: error: no such model file: {missing}\n"


def test_an_internal_error_is_not_a_usage_error(tmp_path):
    """A bug (here a plain ValueError from a function the command calls) keeps its traceback."""
    done = _widedeep_process(
        "import sys\n"
        "import widedeep.data.simulator as simulator\n"
        "def broken(*args, **kwargs):\n"
        "    raise ValueError('an internal bug')\n"
        "simulator.simulate_dataset = broken\n"
        "from widedeep.cli import main\n"
        f"sys.exit(main(['simulate', '--out', {str(tmp_path / 'sim')!r}]))\n"
    )
    assert done.returncode not in (0, 2)
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip().endswith("ValueError: an internal bug")
    assert "widedeep: error" not in done.stderr


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["simulate", "--num-users", "10", "--users-per-round", "50"], "users_per_round"),
        (["train", "--model", "dfn", "--model-dim", "8", "--num-heads", "3"], "num_heads"),
        (["train", "--model", "dfn", "--pooling", "max-ish"], "pooling"),
        (["train", "--strategy", "multi_worker"], "TF_CONFIG"),
        (["tune", "--validation-fraction", "0"], "validation_fraction"),
    ],
    ids=["simulate", "num_heads", "pooling", "tf_config", "tune"],
)
def test_values_the_library_refuses_are_one_line_errors(
    sim_dir, tmp_path, capsys, monkeypatch, argv, needle
):
    """Checks made by widedeep's classes and functions, not by the parser, still read as usage."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    data = [] if argv[0] == "simulate" else ["--data", str(sim_dir), "--logdir", ""]
    _one_line_error([*argv, *data, "--out", str(tmp_path / "out")], capsys, needle)


def test_a_file_that_is_no_model(sim_dir, tmp_path, capsys):
    junk = tmp_path / "junk.keras"
    junk.write_text("not a model")
    argv = ["evaluate", "--model", str(junk), "--data", str(sim_dir)]
    _one_line_error(argv, capsys, str(junk), "`.keras` zip file")


def test_early_stopping_keeps_the_best_epoch(sim_dir, tmp_path, capsys):
    import keras

    from widedeep.data.carve import validation_carve
    from widedeep.data.reader import load_dataset_dir
    from widedeep.data.training_pipelines import training_datasets
    from widedeep.models.wide_deep import CALIBRATION

    run = tmp_path / "run"
    # A wide MLP, small batches and fast optimizers (Keras' 0.1 accumulators, large rates)
    # overfit the tiny data: the validation AUC peaks before epoch 8 and falls after it.
    args = ["train", "--data", str(sim_dir), "--out", str(run), "--logdir", ""]
    args += ["--epochs", "8", "--early-stopping", "2", "--hidden-units", "256,256"]
    args += ["--batch-size", "64", "--wide-learning-rate", "2", "--deep-learning-rate", "0.5"]
    args += ["--wide-initial-accumulator", "0.1", "--deep-initial-accumulator", "0.1"]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    history = metrics["validation_auc"]
    best = max(range(len(history)), key=history.__getitem__) + 1
    assert metrics["best_epoch"] == best
    assert metrics["epochs_run"] == len(history)
    # Either every epoch ran, or training stopped 2 epochs after the best one.
    assert len(history) == 8 or len(history) == best + 2
    assert json.loads((run / "config.json").read_text())["early_stopping"] == 2
    # The saved model has the best epoch's weights: its validation AUC is the best one.
    schema, _ = load_dataset_dir(str(sim_dir))
    carve = validation_carve(str(sim_dir), 0.1)
    assert carve.kind == "time"
    _, valid = training_datasets(
        str(sim_dir), schema, carve.fit_rows, carve.validation_rows, batch_size=64, seed=0,
        feedback_weights=None,
    )  # fmt: skip
    model = keras.saving.load_model(run / "model.keras")
    # Without the calibration offset fitted after training (it moves no ranking, but Keras'
    # AUC counts at 1000 fixed thresholds, which a shift moves): the weights as at that epoch.
    model.get_layer(CALIBRATION).offset.assign(0.0)
    restored = model.evaluate(valid, return_dict=True, verbose=0)["auc"]
    assert restored == pytest.approx(history[best - 1], abs=1e-6)
    assert best < len(history)  # a later epoch was worse, so the check above is sharp
    assert restored != pytest.approx(history[-1], abs=1e-6)
    capsys.readouterr()


def test_early_stopping_needs_a_validation_split(sim_dir, tmp_path, capsys):
    argv = ["train", "--data", str(sim_dir), "--out", str(tmp_path / "r")]
    argv += ["--early-stopping", "2", "--validation-fraction", "0"]
    _one_line_error(argv, capsys, "--early-stopping", "--validation-fraction")
