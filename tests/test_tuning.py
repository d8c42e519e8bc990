"""KerasTuner search: searched values reach both optimizers, time-ordered validation, resumption, logs."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

import widedeep.data.training_pipelines as training_module
from tests.conftest import SEQUENCE_LENGTH, make_tiny_schema, optimizer_slots
from tuning.hypermodels import CTRHyperModel, DFNHyperModel, TrialData, WideDeepHyperModel
from tuning.search import make_tuner, run_search
from widedeep.data.reader import load_dataset_dir, read_columns
from widedeep.data.simulator import SimulatorConfig, simulate_dataset
from widedeep.evaluation import predictions
from widedeep.metrics import gauc
from widedeep.models.dfn import DFN_DEFAULTS
from widedeep.models.wide_deep import build_wide_deep
from widedeep.optimizers import OptimizerConfig
from widedeep.training import DEFAULT_FEEDBACK_WEIGHTS, build_model

OPTIMIZER_KEYS = (
    "wide_learning_rate",
    "wide_l1",
    "wide_l2",
    "wide_initial_accumulator",
    "deep_learning_rate",
    "deep_initial_accumulator",
)


def optimizer_settings(model: keras.Model) -> dict[str, float]:
    """What the two optimizers of a compiled `WideDeepModel` actually hold."""
    wide, deep = model.wide_optimizer, model.deep_optimizer
    return {
        "wide_learning_rate": float(keras.ops.convert_to_numpy(wide.learning_rate)),
        "wide_l1": float(wide.l1_regularization_strength),
        "wide_l2": float(wide.l2_regularization_strength),
        "wide_initial_accumulator": float(wide.initial_accumulator_value),
        "deep_learning_rate": float(keras.ops.convert_to_numpy(deep.learning_rate)),
        "deep_initial_accumulator": float(deep.initial_accumulator_value),
    }


def assert_optimizers_hold(settings: dict[str, float], values: dict[str, Any]) -> None:
    for key in OPTIMIZER_KEYS:
        # Learning rates live in float32 variables; the rest are Python floats.
        np.testing.assert_allclose(settings[key], values[key], rtol=1e-6, err_msg=key)


def hparams_of_run(run_dir: str) -> dict[str, Any]:
    """The hparams `session_start_info` written directly in a TensorBoard run directory."""
    found: dict[str, Any] = {}
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "hparams":
                    continue
                data = plugin_data_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content
                )
                if data.WhichOneof("data") == "session_start_info":
                    for key, v in data.session_start_info.hparams.items():
                        found[key] = getattr(v, v.WhichOneof("kind"))
    return found


def scalars_of_run(run_dir: str) -> dict[str, list[float]]:
    """Scalar summaries written by `OptimizerLogger` (tensor summaries) in one directory."""
    found: dict[str, list[float]] = {}
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    return found


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("tune") / "data")
    simulate_dataset(
        out,
        SimulatorConfig(
            num_users=80, num_items=60, num_impressions=3000, users_per_round=40, max_length=5
        ),
    )
    return out


# ------------------------------------------------------------------ the space
def test_empty_hyperparameters_build_the_cli_defaults(tiny_schema):
    defaults = OptimizerConfig()
    hypermodel = WideDeepHyperModel(tiny_schema)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert_optimizers_hold(optimizer_settings(model), vars(defaults))
    assert hypermodel.model_hyperparameters(hp) == {"hidden_units": [128, 64], "dropout": 0.5}
    assert hypermodel.feedback_weights(hp) is None
    assert model.count_params() == build_model(tiny_schema, "wide_deep").count_params()

    dfn = DFNHyperModel(tiny_schema)
    hp = kt.HyperParameters()
    assert dfn.model_hyperparameters(hp) == {
        "hidden_units": [128, 64],
        "dropout": 0.5,
        "embedding_dim": 8,
        "num_heads": DFN_DEFAULTS["num_heads"],
        "sequence_length": SEQUENCE_LENGTH,
        "pooling": DFN_DEFAULTS["pooling"],
    }
    assert dfn.feedback_weights(hp) == DEFAULT_FEEDBACK_WEIGHTS["dfn"]
    assert dfn.optimizer_config(hp) == defaults


def test_dfn_space_has_every_searched_setting_and_valid_choices():
    schema = make_tiny_schema()
    hp = kt.HyperParameters()
    DFNHyperModel(schema).declare_hyperparameters(hp)
    space = {p.name: p for p in hp.space}
    assert set(space) == {
        *OPTIMIZER_KEYS,
        "embedding_dim",
        "hidden_units",
        "dropout",
        "num_heads",
        "sequence_length",
        "pooling",
        "dislike_weight",
    }
    assert max(space["sequence_length"].values) <= SEQUENCE_LENGTH
    assert all(DFN_DEFAULTS["model_dim"] % heads == 0 for heads in space["num_heads"].values)


def test_build_compiles_both_optimizers_with_the_trial_values(tiny_schema):
    hypermodel = WideDeepHyperModel(tiny_schema)
    hp = kt.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    chosen = {
        "wide_learning_rate": 0.0123,
        "wide_l1": 0.001,
        "wide_l2": 0.01,
        "wide_initial_accumulator": 0.02,
        "deep_learning_rate": 0.31,
        "deep_initial_accumulator": 0.0007,
        "embedding_dim": 16,
        "hidden_units": "64,32",
        "dropout": 0.3,
    }
    hp.values.update(chosen)
    model = hypermodel.build(hp)
    assert_optimizers_hold(optimizer_settings(model), chosen)
    # The accumulator value is really used: every Adagrad slot starts at it.
    model.build_optimizers()
    slots = optimizer_slots(model.deep_optimizer, model.trainable_variables)
    assert slots
    for path, by_name in slots.items():
        np.testing.assert_allclose(by_name["accumulator"].numpy(), 0.0007, rtol=1e-6, err_msg=path)
    mlp = model.get_layer("deep")
    assert list(mlp.hidden_units) == [64, 32] and mlp.dropout == pytest.approx(0.3)
    reference = build_wide_deep(tiny_schema, hidden_units=(64, 32), embedding_dim=16)
    assert model.count_params() == reference.count_params()


def test_fit_weights_dislikes_with_the_trial_value(tiny_data, monkeypatch):
    schema, _ = load_dataset_dir(tiny_data)
    data = TrialData.from_dataset_dir(tiny_data, validation_fraction=0.2, batch_size=256)
    hypermodel = DFNHyperModel(schema, data)
    hp = kt.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    hp.values.update({"dislike_weight": 3.5, "hidden_units": "32,16", "embedding_dim": 4})
    made = []
    original, original_fn = training_module.make_dataset, training_module.make_dataset_fn

    def spy(*args: Any, **kwargs: Any) -> tf.data.Dataset:
        made.append(original(*args, **kwargs))
        return made[-1]

    def fn_spy(*args: Any, **kwargs: Any) -> Any:
        pipeline = original_fn(*args, **kwargs)
        return lambda seed: made.append(pipeline(seed)) or made[-1]

    monkeypatch.setattr(training_module, "make_dataset", spy)
    monkeypatch.setattr(training_module, "make_dataset_fn", fn_spy)
    history = hypermodel.fit(hp, hypermodel.build(hp), epochs=1, verbose=0)
    assert "val_auc" in history.history
    # The trial's validation GAUC, as `widedeep train` logs it: the tuner may maximise it.
    valid = made[1]
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, epochs=1, verbose=0)
    p, labels, users = predictions(model, valid, hypermodel.schema.group_key)
    assert history.history["val_gauc"] == pytest.approx([gauc(labels, p, users)], abs=1e-9)
    made[2:] = []
    assert len(made) == 2
    weights = np.concatenate([w.numpy() for ds in made for _, _, w in ds])
    assert set(np.unique(weights)) == {1.0, 3.5}  # dislikes weigh 3.5, the rest 1
    with pytest.raises(TypeError, match="do not pass data"):
        hypermodel.fit(hp, hypermodel.build(hp), made[0], epochs=1)


def test_trial_data_rows_are_time_ordered_and_disjoint(tiny_data):
    _, meta = load_dataset_dir(tiny_data)
    total = meta["splits"]["train"]["examples"]
    data = TrialData.from_dataset_dir(tiny_data, validation_fraction=0.1)
    assert data.fit_rows == (0, total - round(total * 0.1))
    assert data.validation_rows == (data.fit_rows[1], total)
    with pytest.raises(ValueError, match="validation_fraction"):
        TrialData.from_dataset_dir(tiny_data, validation_fraction=0.0)
    with pytest.raises(ValueError, match="disjoint"):
        TrialData(tiny_data, fit_rows=(0, 10), validation_rows=(5, 20))


# ------------------------------------------------------------ a whole search
class _Interrupt(KeyboardInterrupt):
    """Stands for Ctrl-C in the middle of a trial (not an `Exception`, so KerasTuner does not catch it)."""


@pytest.fixture(scope="module")
def search_run(tiny_data, tmp_path_factory) -> dict[str, Any]:
    """Two calls of the same 2-trial search; the first is interrupted when trial 1 starts.

    Records, per call, every `CTRHyperModel.fit` (the TensorBoard directory, the
    hyper-parameter values and what the optimizers of the model being fitted
    hold) and every `make_dataset` / `make_dataset_fn` call made while the hypermodel fits.
    """
    root = tmp_path_factory.mktemp("search")
    out_dir, logdir = str(root / "out"), str(root / "logs")
    calls: list[dict[str, list]] = []
    original_fit = CTRHyperModel.fit
    original_make = training_module.make_dataset
    original_make_fn = training_module.make_dataset_fn
    interrupt = {"at": "1"}
    fitting = {"now": False}

    def fit_spy(self, hp, model, *args, **kwargs):
        tensorboard = [c for c in kwargs.get("callbacks", []) if hasattr(c, "log_dir")]
        run = os.path.relpath(tensorboard[0].log_dir, logdir)
        calls[-1]["fits"].append(
            {"run": run, "values": dict(hp.values), "optimizers": optimizer_settings(model)}
        )
        if interrupt["at"] and run.split(os.sep)[1] == interrupt["at"]:
            raise _Interrupt
        fitting["now"] = True
        try:
            return original_fit(self, hp, model, *args, **kwargs)
        finally:
            fitting["now"] = False

    def make_spy(data_dir, split, *args, **kwargs):
        # Datasets made while a hypermodel fits (the final test evaluation is not one).
        if fitting["now"]:
            calls[-1]["datasets"].append({"split": split, "rows": kwargs.get("rows")})
        return original_make(data_dir, split, *args, **kwargs)

    def make_fn_spy(data_dir, split, *args, **kwargs):
        if fitting["now"]:
            calls[-1]["datasets"].append({"split": split, "rows": kwargs.get("rows")})
        return original_make_fn(data_dir, split, *args, **kwargs)

    kwargs = dict(
        model="wide_deep",
        tuner="random",
        max_trials=2,
        epochs=1,
        batch_size=256,
        logdir=logdir,
        verbose=0,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CTRHyperModel, "fit", fit_spy)
        mp.setattr(training_module, "make_dataset", make_spy)
        mp.setattr(training_module, "make_dataset_fn", make_fn_spy)
        calls.append({"fits": [], "datasets": []})
        with pytest.raises(_Interrupt):
            run_search(tiny_data, out_dir, **kwargs)
        interrupt["at"] = None
        calls.append({"fits": [], "datasets": []})
        result = run_search(tiny_data, out_dir, **kwargs)
    run_dir = glob.glob(os.path.join(logdir, "tune-*"))[0]
    return {
        "data": tiny_data,
        "out": out_dir,
        "run_dir": run_dir,
        "calls": calls,
        "result": result,
    }


def test_interrupted_search_resumes_the_interrupted_trial(search_run):
    first, second = search_run["calls"]
    assert [f["run"].split(os.sep)[1] for f in first["fits"]] == ["0", "1"]
    runs = [f["run"].split(os.sep)[1] for f in second["fits"]]
    # Trial 0 is not run again; the interrupted trial 1 is retried with the same values.
    assert runs == ["1", "default", "best"]
    assert second["fits"][0]["values"] == first["fits"][1]["values"]
    assert search_run["result"]["trials"] == 2
    trials = glob.glob(os.path.join(search_run["out"], "wide_deep_random", "trial_*", "trial.json"))
    assert len(trials) == 2


def test_search_optimizers_hold_each_trials_values(search_run):
    fits = [f for call in search_run["calls"] for f in call["fits"]]
    assert len(fits) == 5
    for fit in fits:
        assert_optimizers_hold(fit["optimizers"], fit["values"])
    # The oracle's record of each trial is what its optimizers held.
    project = os.path.join(search_run["out"], "wide_deep_random")
    for fit in fits[:1] + fits[2:3]:
        trial_id = fit["run"].split(os.sep)[1]
        with open(os.path.join(project, f"trial_{trial_id}", "trial.json")) as f:
            recorded = json.load(f)["hyperparameters"]["values"]
        assert recorded == fit["values"]
    assert len({f["values"]["wide_learning_rate"] for f in fits[:3]}) == 2  # trials differ


def test_logged_hparams_and_learning_rates_equal_the_trials_values(search_run):
    run_dir = search_run["run_dir"]
    for fit in search_run["calls"][1]["fits"]:
        trial_dir = os.path.join(os.path.dirname(run_dir), fit["run"])
        logged = hparams_of_run(trial_dir)
        assert logged.keys() == fit["values"].keys()
        for key, value in fit["values"].items():
            if isinstance(value, str):
                assert logged[key] == value, key
            else:
                assert logged[key] == pytest.approx(value, rel=1e-12), key
        scalars = scalars_of_run(os.path.join(trial_dir, "optimizers"))
        assert scalars["wide_learning_rate"] == pytest.approx(
            [fit["values"]["wide_learning_rate"]], rel=1e-6
        )
        assert scalars["deep_learning_rate"] == pytest.approx(
            [fit["values"]["deep_learning_rate"]], rel=1e-6
        )
    # The experiment (search space and metric columns) of the HParams dashboard.
    assert glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    for trial_id in ("0", "1"):
        assert hparams_of_run(os.path.join(run_dir, trial_id, "execution0"))


def test_validation_rows_are_the_end_of_train_and_never_test(search_run):
    data = search_run["data"]
    _, meta = load_dataset_dir(data)
    total = meta["splits"]["train"]["examples"]
    made = [d for call in search_run["calls"] for d in call["datasets"]]
    assert {d["split"] for d in made} == {"train"}
    fit_rows, valid_rows = (
        {tuple(d["rows"]) for d in made[0::2]},
        {tuple(d["rows"]) for d in made[1::2]},
    )
    assert len(fit_rows) == len(valid_rows) == 1
    (fit_start, fit_stop), (valid_start, valid_stop) = fit_rows.pop(), valid_rows.pop()
    assert (fit_start, fit_stop, valid_start, valid_stop) == (0, valid_start, fit_stop, total)
    assert valid_stop - valid_start == round(total * 0.1)
    # Time order: validation rounds follow the fit rounds and precede the test split.
    rounds = read_columns(data, "train", ["round"])["round"]
    test_rounds = read_columns(data, "test", ["round"])["round"]
    assert rounds[:fit_stop].max() <= rounds[fit_stop:].min()
    assert rounds[fit_stop:].max() < test_rounds.min()


def test_search_writes_best_hyperparameters_metrics_and_a_model_with_them(search_run):
    out, result = search_run["out"], search_run["result"]
    with open(os.path.join(out, "best_hyperparameters.json")) as f:
        best = json.load(f)
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics.keys() == result.keys()
    for key in ("auc", "logloss", "gauc", "examples_per_sec", "best_val_auc", "default_val_auc"):
        assert np.isfinite(metrics[key]), key
    assert best["val_auc"] == metrics["best_val_auc"]
    assert best["optimizer"] == {k: best["values"][k] for k in OPTIMIZER_KEYS}

    scores = {}
    for path in glob.glob(os.path.join(out, "wide_deep_random", "trial_*", "trial.json")):
        with open(path) as f:
            trial = json.load(f)
        scores[trial["trial_id"]] = trial["score"]
    assert best["trial_id"] == max(scores, key=scores.get)
    assert best["val_auc"] == pytest.approx(max(scores.values()))

    # The retrained best model trained with the best trial's values, and saved them.
    retrain = search_run["calls"][1]["fits"][-1]
    assert retrain["values"] == best["values"]
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    assert_optimizers_hold(optimizer_settings(model), best["values"])
    assert int(model.wide_optimizer.iterations.numpy()) > 0

    # The default baseline ran with the CLI defaults and is cached for the next call.
    default = search_run["calls"][1]["fits"][1]
    assert_optimizers_hold(default["optimizers"], vars(OptimizerConfig()))
    with open(os.path.join(out, "default_baseline.json")) as f:
        assert json.load(f)["val_auc"] == metrics["default_val_auc"]


def test_make_tuner_kinds_and_argument_checks(tiny_data, tmp_path):
    schema, _ = load_dataset_dir(tiny_data)
    hypermodel = WideDeepHyperModel(schema)
    kinds = {"random": kt.RandomSearch, "hyperband": kt.Hyperband}
    try:
        import scipy  # noqa: F401  (KerasTuner's Gaussian process needs both,
        import sklearn  # noqa: F401  from the keras-tuner[bayesian] extra)

        kinds["bayesian"] = kt.BayesianOptimization
    except ImportError:
        with pytest.raises(ImportError, match="scipy|scikit-learn"):
            make_tuner(
                hypermodel,
                "bayesian",
                max_trials=4,
                epochs=2,
                directory=str(tmp_path),
                project_name="b",
            )
    for name, cls in kinds.items():
        tuner = make_tuner(
            hypermodel,
            name,
            max_trials=4,
            epochs=2,
            directory=str(tmp_path),
            project_name=name,
        )
        assert isinstance(tuner, cls)
        assert tuner.oracle.objective.name == "val_auc"
        assert tuner.oracle.objective.direction == "max"
    tuner = make_tuner(
        hypermodel, "random", max_trials=1, epochs=1, directory=str(tmp_path), project_name="g",
        monitor="val_gauc",
    )  # fmt: skip
    assert tuner.oracle.objective.name == "val_gauc"
    with pytest.raises(ValueError, match="monitor"):
        make_tuner(
            hypermodel, "random", max_trials=1, epochs=1, directory=str(tmp_path),
            project_name="h", monitor="val_loss",
        )  # fmt: skip
    with pytest.raises(ValueError, match="tuner"):
        run_search(tiny_data, str(tmp_path / "x"), tuner="grid")
    with pytest.raises(ValueError, match="model"):
        run_search(tiny_data, str(tmp_path / "x"), model="wide")
    with pytest.raises(ValueError, match="validation_fraction"):
        run_search(tiny_data, str(tmp_path / "x"), validation_fraction=0.0)


def test_hyperband_search_runs_without_logs_or_baseline(tiny_data, tmp_path):
    out = tmp_path / "out"
    result = run_search(
        tiny_data,
        str(out),
        tuner="hyperband",
        epochs=2,
        batch_size=512,
        logdir=None,
        evaluate_defaults=False,
        verbose=0,
    )
    # Hyperband up to 2 epochs, factor 3: one bracket, ceil(1 + log_3(2)) = 2 trials of 2 epochs
    # (up to 3 epochs it would be 3 trials of 1 epoch, the best of them on to 3, then 2 of 3).
    trials = {}
    for path in glob.glob(str(out / "wide_deep_hyperband" / "trial_*" / "trial.json")):
        with open(path) as f:
            trial = json.load(f)
        trials[trial["trial_id"]] = trial
    assert result["trials"] == len(trials) == 2
    assert all(t["status"] == "COMPLETED" for t in trials.values())
    values = {i: t["hyperparameters"]["values"] for i, t in trials.items()}
    assert [(v["tuner/epochs"], v["tuner/initial_epoch"]) for v in values.values()] == [(2, 0)] * 2
    assert values[min(values)] != values[max(values)]
    # The best trial, retrained from scratch for 2 epochs with its values and saved.
    with open(out / "best_hyperparameters.json") as f:
        best = json.load(f)
    assert best["trial_id"] == result["best_trial_id"]
    assert best["trial_id"] == max(trials, key=lambda i: trials[i]["score"])
    assert best["val_auc"] == pytest.approx(trials[best["trial_id"]]["score"])
    assert best["values"] == values[best["trial_id"]]
    model = keras.models.load_model(out / "model.keras")
    assert_optimizers_hold(optimizer_settings(model), best["values"])
    with open(out / "search_config.json") as f:
        fit_rows = json.load(f)["fit_rows"]
    assert int(model.wide_optimizer.iterations.numpy()) == 2 * -(-fit_rows // 512)
    # No baseline and no TensorBoard logs: nothing but the search's own files.
    assert "default_val_auc" not in result
    with open(out / "metrics.json") as f:
        assert json.load(f) == result
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(out)) == [
        "best_hyperparameters.json",
        "metrics.json",
        "model.keras",
        "search_config.json",
        "wide_deep_hyperband",
    ]
    assert not glob.glob(str(tmp_path / "**" / "events.out.tfevents.*"), recursive=True)
