"""`run_search`: a resumable KerasTuner search of Wide & Deep or DFN, then a retrain of the best.

```python
from tuning import run_search
result = run_search("data/sim", "runs/tune_wd", model="wide_deep", tuner="bayesian", max_trials=10)
```

Layout of `out_dir` after a search:

```
out_dir/<model>_<tuner>/          KerasTuner's project: oracle state and one folder per trial
out_dir/search_config.json        the arguments of the latest call
out_dir/default_baseline.json     validation AUC of the default hyper-parameters (cached)
out_dir/best_hyperparameters.json the best trial's values and the `widedeep train` settings they mean
out_dir/metrics.json              test metrics of the best configuration, retrained
out_dir/model.keras               that retrained model
```

TensorBoard gets one run per trial under
`logdir/tune-<out_dir name>-<model>-<tuner>/<trial id>/execution0` (loss, AUC,
both optimizers' learning rates, and the trial's hyper-parameters for the
HParams dashboard), plus `default/` and `best/` for the baseline and the
retrain.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import keras
import keras_tuner as kt
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from tuning import _compat
from tuning.hypermodels import TUNABLE_MODELS, CTRHyperModel, TrialData, get_hypermodel
from widedeep.data.carve import ValidationCarve, count_rows
from widedeep.data.reader import load_dataset_dir
from widedeep.safe_output import write_json
from widedeep.training import MONITORS, TrainConfig, finish_run

__all__ = ["TUNERS", "make_tuner", "run_search"]

TUNERS = ("random", "bayesian", "hyperband")
"""Search algorithms understood by `run_search` and `widedeep tune`."""


def make_tuner(
    hypermodel: CTRHyperModel,
    tuner: str,
    *,
    max_trials: int,
    epochs: int,
    directory: str,
    project_name: str,
    seed: int = 0,
    executions_per_trial: int = 1,
    overwrite: bool = False,
    monitor: str = TrainConfig.monitor,
) -> kt.Tuner:
    """A KerasTuner tuner of `hypermodel` that maximises `monitor` on the validation rows.

    Args:
        hypermodel: the hypermodel.
        tuner: `"random"`, `"bayesian"` (3 random trials or a third of
            `max_trials`, whichever is more, then a Gaussian process) or
            `"hyperband"` (brackets up to `epochs` epochs; it sets its own number
            of trials and ignores `max_trials`).
        max_trials: trials of the random and Bayesian searches.
        epochs: `max_epochs` of Hyperband.
        directory: where the tuner keeps its projects.
        project_name: the project's folder in `directory`; an existing project is
            resumed unless `overwrite`.
        seed: the oracle's seed.
        executions_per_trial: fits per trial (their objectives are averaged).
        overwrite: start afresh, deleting the existing project.
        monitor: the objective, one of `widedeep.training.MONITORS` (`val_gauc` is
            computed by `widedeep.callbacks.ValidationGAUC`, which the hypermodels add).

    Returns:
        A `keras_tuner.Tuner`.
    """
    if monitor not in MONITORS:
        raise ValueError(f"`monitor` must be one of {MONITORS}. Received: monitor={monitor!r}")
    common: dict[str, Any] = {
        "objective": kt.Objective(monitor, "max"),
        "seed": seed,
        "executions_per_trial": executions_per_trial,
        "directory": directory,
        "project_name": project_name,
        "overwrite": overwrite,
    }
    if tuner == "random":
        return kt.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if tuner == "bayesian":
        return kt.BayesianOptimization(
            hypermodel,
            max_trials=max_trials,
            num_initial_points=min(max_trials, max(3, max_trials // 3)),
            **common,
        )
    if tuner == "hyperband":
        return kt.Hyperband(hypermodel, max_epochs=epochs, factor=3, **common)
    raise ValueError(f"`tuner` must be one of {TUNERS}. Received: tuner={tuner!r}")


def run_search(
    data_dir: str,
    out_dir: str,
    *,
    model: str = "wide_deep",
    tuner: str = "random",
    max_trials: int = 10,
    epochs: int = 3,
    batch_size: int = 512,
    seed: int = 0,
    logdir: str | None = "logs",
    validation_fraction: float = 0.1,
    monitor: str = TrainConfig.monitor,
    overwrite: bool = False,
    executions_per_trial: int = 1,
    evaluate_defaults: bool = True,
    verbose: int = 1,
) -> dict[str, Any]:
    """Searches hyper-parameters on the validation rows, then retrains and tests the best.

    1. Validation rows are carved from the *train* split as `widedeep train`
       carves them (`widedeep.data.carve`: its latest rows, or each user's last
       rows for a per-user split); the test split is read only by the final
       evaluation.
    2. The tuner (`make_tuner`) runs up to `max_trials` trials of `epochs`
       epochs, each scored by its best epoch's `monitor`. Its state lives in
       `out_dir/<model>_<tuner>`, so running the same call again after an
       interruption finishes the interrupted trial and continues; a larger
       `max_trials` adds only the missing trials.
    3. With `evaluate_defaults`, the default hyper-parameters (those of
       `widedeep train` without flags) are trained once on the same rows and
       scored the same way (`default_<monitor>`, cached in
       `out_dir/default_baseline.json`).
    4. The best configuration is retrained from scratch on the fit rows for
       `epochs` epochs, evaluated on the test split with
       `widedeep.evaluation.evaluate_model` and saved as `out_dir/model.keras`.

    Args:
        data_dir: the dataset directory.
        out_dir: the output directory (tuner state, JSON files, model).
        model: one of `TUNABLE_MODELS` (`"wide_deep"`, `"dfn"`).
        tuner: one of `TUNERS` (`"random"`, `"bayesian"`, `"hyperband"`).
        max_trials: number of trials in total, counting those of earlier calls
            (ignored by Hyperband).
        epochs: epochs per trial, of the baseline and of the retrain.
        batch_size: training batch size.
        seed: seed of the weights, the shuffles and the oracle.
        logdir: TensorBoard root directory; None writes no logs.
        validation_fraction: share of the train split used as validation rows
            (`widedeep.data.carve`); must be in (0, 1).
        monitor: what the trials maximise, one of `widedeep.training.MONITORS`.
        overwrite: discard a previous search in `out_dir` instead of resuming.
        executions_per_trial: fits averaged per trial.
        evaluate_defaults: also train and score the default hyper-parameters.
        verbose: 0 silent, 1 progress bars and trial summaries, 2 one line per epoch.

    Returns:
        The content of `out_dir/metrics.json`: the retrained model's test
        metrics (`auc`, `gauc`, `logloss`, ...), `examples_per_sec`,
        `train_seconds`, `monitor`, `best_<monitor>` (of the best trial, e.g.
        `best_val_auc`), `retrained_<monitor>`, `default_<monitor>` (when evaluated),
        `best_trial_id`, `trials` (completed so far), `model` and `tuner`.

    Raises:
        ValueError: on an unknown model or tuner or an out-of-range argument.
    """
    if tuner not in TUNERS:
        raise ValueError(f"`tuner` must be one of {TUNERS}. Received: tuner={tuner!r}")
    if model not in TUNABLE_MODELS:
        raise ValueError(f"`model` must be one of {TUNABLE_MODELS}. Received: model={model!r}")
    for name, value in (
        ("max_trials", max_trials),
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("executions_per_trial", executions_per_trial),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")

    schema, meta = load_dataset_dir(data_dir)
    data = TrialData.from_dataset_dir(
        data_dir, validation_fraction=validation_fraction, batch_size=batch_size, seed=seed
    )
    hypermodel = get_hypermodel(model, schema, data)
    os.makedirs(out_dir, exist_ok=True)
    settings = {
        "data_dir": os.fspath(data_dir),
        "model": model,
        "tuner": tuner,
        "max_trials": max_trials,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "validation_fraction": validation_fraction,
        "monitor": monitor,
        "executions_per_trial": executions_per_trial,
        "carve": data.carve,
        "fit_rows": data.num_fit_rows,
        "validation_rows": count_rows(data.validation_rows),
    }
    write_json(os.path.join(out_dir, "search_config.json"), {**settings, "logdir": logdir})

    run_logdir = None
    if logdir:
        run_name = f"tune-{os.path.basename(os.path.normpath(out_dir))}-{model}-{tuner}"
        run_logdir = os.path.join(logdir, run_name)

    # ------------------------------------------------------------ search
    keras.utils.set_random_seed(seed)
    search = make_tuner(
        hypermodel,
        tuner,
        max_trials=max_trials,
        epochs=epochs,
        directory=out_dir,
        project_name=f"{model}_{tuner}",
        seed=seed,
        executions_per_trial=executions_per_trial,
        overwrite=overwrite,
        monitor=monitor,
    )
    callbacks: list[keras.callbacks.Callback] = []
    if run_logdir:
        _write_hparams_config(run_logdir, search.oracle.get_space())
        # KerasTuner moves each copy to `<trial id>/execution<n>` and adds the hparams callback.
        callbacks.append(keras.callbacks.TensorBoard(run_logdir))
    search.search(epochs=epochs, callbacks=callbacks, verbose=verbose)

    best_trial = search.oracle.get_best_trials(1)[0]
    best_hp = best_trial.hyperparameters
    completed = [
        t
        for t in search.oracle.trials.values()
        if t.status == kt.engine.trial.TrialStatus.COMPLETED
    ]
    write_json(
        os.path.join(out_dir, "best_hyperparameters.json"),
        {
            "trial_id": best_trial.trial_id,
            monitor: float(best_trial.score),
            "values": best_hp.values,
            **hypermodel.describe(best_hp),
        },
    )

    # ---------------------------------------------------------- baseline
    default_score = None
    if evaluate_defaults:
        default_score = _default_baseline(
            hypermodel, out_dir, settings, run_logdir, verbose, overwrite
        )

    # ----------------------------------------------------------- retrain
    keras.utils.set_random_seed(seed)
    best_model = hypermodel.build(best_hp)
    start = time.perf_counter()
    history = hypermodel.fit(
        best_hp,
        best_model,
        epochs=epochs,
        callbacks=_run_callbacks(run_logdir, "best", best_hp),
        verbose=verbose,
    )
    seconds = time.perf_counter() - start

    extra: dict[str, Any] = {
        "examples_per_sec": data.num_fit_rows * epochs / seconds,
        "train_seconds": seconds,
        "model": model,
        "tuner": tuner,
        "trials": len(completed),
        "best_trial_id": best_trial.trial_id,
        "monitor": monitor,
        f"best_{monitor}": float(best_trial.score),
        f"retrained_{monitor}": float(history.history[monitor][-1]),
    }
    if default_score is not None:
        extra[f"default_{monitor}"] = default_score
    carve = ValidationCarve(
        data.carve, data.fit_rows, data.validation_rows, int(meta["splits"]["train"]["examples"])
    )
    return finish_run(best_model, data_dir, meta, out_dir, carve, extra)


def _default_baseline(
    hypermodel: CTRHyperModel,
    out_dir: str,
    settings: dict[str, Any],
    run_logdir: str | None,
    verbose: int,
    overwrite: bool,
) -> float:
    """Best-epoch `settings["monitor"]` of the default hyper-parameters, scored like a trial (cached)."""
    path = os.path.join(out_dir, "default_baseline.json")
    key = {k: settings[k] for k in settings if k not in ("tuner", "max_trials")}
    if not overwrite and os.path.isfile(path):
        with open(path) as f:
            cached = json.load(f)
        if cached.get("settings") == key:
            return cached[settings["monitor"]]
    hp = kt.HyperParameters()
    keras.utils.set_random_seed(settings["seed"])
    model = hypermodel.build(hp)
    history = hypermodel.fit(
        hp,
        model,
        epochs=settings["epochs"],
        callbacks=_run_callbacks(run_logdir, "default", hp),
        verbose=verbose,
    )
    monitor = settings["monitor"]
    score = float(max(history.history[monitor]))
    write_json(
        path,
        {
            "settings": key,
            monitor: score,
            f"{monitor}_per_epoch": history.history[monitor],
            **hypermodel.describe(hp),
        },
    )
    return score


def _run_callbacks(
    run_logdir: str | None, name: str, hp: kt.HyperParameters
) -> list[keras.callbacks.Callback]:
    """TensorBoard and HParams callbacks of a run outside the search (baseline, retrain)."""
    if not run_logdir:
        return []
    logdir = os.path.join(run_logdir, name)
    return [
        keras.callbacks.TensorBoard(logdir),
        hparams_api.KerasCallback(logdir, dict(hp.values), trial_id=name),
    ]


def _write_hparams_config(run_logdir: str, space: kt.HyperParameters) -> None:
    """Declares the search space and the metric columns of TensorBoard's HParams dashboard."""
    hparams = _compat.hparams_of_space(space, hparams_api)
    metrics = [
        hparams_api.Metric("epoch_auc", group="validation", display_name="val AUC"),
        hparams_api.Metric("epoch_loss", group="validation", display_name="val loss"),
        hparams_api.Metric("epoch_auc", group="train", display_name="train AUC"),
    ]
    with tf.summary.create_file_writer(run_logdir).as_default():
        hparams_api.hparams_config(hparams=hparams, metrics=metrics)
