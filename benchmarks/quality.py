"""Test AUC of each model over several training seeds: on simulated data against the oracle, or on any dataset directory.

One dataset is simulated (`widedeep simulate --seed DATA_SEED`, default sizes
unless overridden), or `--data DIR` names an existing dataset directory (a real
log prepared with `widedeep prepare`), and every model is trained on it once per
training seed (initialisation and shuffling) with the CLI defaults. Prints JSON:
per-seed metrics, per-model mean / std / min-max spread of test AUC, GAUC and log
loss, and on simulated data the gap to `oracle_auc` and the fraction of Wide &
Deep's gap that each model closes. `--baselines` adds popularity, logistic
regression and LR + history statistics (`widedeep.baselines`) on the same rows.

    python benchmarks/quality.py --data data/kuairand --models wide_deep,dfn --baselines

    python benchmarks/quality.py --models wide,deep,wide_deep --seeds 0,1,2
    python benchmarks/quality.py --models wide_deep,wide_deep_seq,dfn --seeds 0,1,2
    python benchmarks/quality.py --models "dfn,dfn:use_fm=false" --seeds 0
    python benchmarks/quality.py --models wide_deep,dfn,well_specified --seeds 0,1,2

`well_specified` is not one of the CTR models: it is the learnable ceiling
(`widedeep.learnable_ceiling`: the simulator's own functional form, every number
learned from the same training split), trained with the same seeds (up to 20
epochs with early stopping on validation AUC, whatever `--epochs` says). When it is
in the run, each model also gets `ceiling_gap_closed_mean`: the fraction of
Wide & Deep's gap *to that ceiling* that it closes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

import keras
import numpy as np
from well_specified import simulator_overrides

from widedeep.baselines import run_baselines
from widedeep.data.simulator import SimulatorConfig, simulate, simulate_dataset
from widedeep.learnable_ceiling import fit_well_specified
from widedeep.training import MONITORS, TrainConfig, train


def parse_variant(spec: str) -> tuple[str, str, dict]:
    """`name` or `name:key=value;key=value` -> (label, model, hyper-parameters)."""
    if ":" not in spec:
        return spec, spec, {}
    model, rest = spec.split(":", 1)
    hp = {}
    for item in rest.split(";"):
        key, value = item.split("=")
        try:
            hp[key] = json.loads(value.lower() if value.lower() in ("true", "false") else value)
        except json.JSONDecodeError:  # a bare word such as pooling=mean
            hp[key] = value
    return spec, model, hp


def _run_name(label: str) -> str:
    """A folder name for a variant label: the label itself, or its digest when too long."""
    name = label.replace(":", "_").replace(";", "_")
    if len(name) <= 120:
        return name
    return f"{name[:80]}-{hashlib.sha1(label.encode()).hexdigest()[:12]}"


def train_variant(
    data: str,
    workdir: str,
    seed: int,
    label: str,
    model: str,
    hp: dict,
    *,
    epochs: int | None = None,
    early_stopping: int | None = None,
    monitor: str | None = None,
    optimizer_overrides: list[str] = (),
) -> dict:
    """Trains one model variant with the CLI defaults (`widedeep.training.train`): its metrics and seconds."""
    keras.backend.clear_session()
    config = TrainConfig(
        data=data,
        out=os.path.join(workdir, f"run-{seed}-{_run_name(label)}"),
        model=model,
        logdir=None,
        seed=seed,
        hyperparameters=hp,
        verbose=0,
    )
    if epochs:
        config.epochs = epochs
    if early_stopping is not None:
        config.early_stopping = early_stopping
    if monitor is not None:
        config.monitor = monitor
    for item in optimizer_overrides:
        key, value = item.split("=")
        setattr(config.optimizer, key, float(value))
    start = time.perf_counter()
    metrics = train(config)
    metrics["seconds"] = time.perf_counter() - start
    return metrics


def summarise(per_seed: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean / std / min-max spread of test AUC, and the means of GAUC and log loss, per variant."""
    summary = {}
    for label, runs in per_seed.items():
        auc = np.array([r["auc"] for r in runs])
        summary[label] = {
            "auc_mean": float(auc.mean()),
            "auc_std": float(auc.std(ddof=1)) if len(auc) > 1 else 0.0,
            "auc_spread": float(auc.max() - auc.min()),
        }
        if "gauc" in runs[0]:  # library models (the well-specified reference has AUC only)
            gauc = np.array([r["gauc"] for r in runs])
            summary[label].update(
                gauc_mean=float(gauc.mean()),
                gauc_spread=float(gauc.max() - gauc.min()),
                logloss_mean=float(np.mean([r["logloss"] for r in runs])),
                examples_per_sec_median=float(np.median([r["examples_per_sec"] for r in runs])),
            )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="wide,deep,wide_deep")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds")
    parser.add_argument("--data-seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--epochs", type=int, default=None, help="default: the CLI default")
    parser.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="patience of early stopping (default: the CLI default; 0 = off)",
    )
    parser.add_argument(
        "--monitor",
        choices=MONITORS,
        default=None,
        help="what early stopping and the best epoch maximise (default: the CLI default)",
    )
    parser.add_argument("--num-impressions", type=int, default=None)
    parser.add_argument(
        "--sim",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="simulator setting override (repeatable), e.g. --sim num_regions=30",
    )
    parser.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="optimizer setting override (repeatable), e.g. --train deep_learning_rate=0.5",
    )
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--data", default=None, help="an existing dataset directory instead of simulated data"
    )
    parser.add_argument(
        "--baselines", action="store_true", help="also score the baselines of widedeep.baselines"
    )
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="widedeep-quality-")
    variants = [parse_variant(m) for m in args.models.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed: dict[str, list[dict]] = {label: [] for label, _, _ in variants}
    if args.data:
        data = args.data
    else:
        data = os.path.join(workdir, f"sim-{args.data_seed}")
        overrides = {"seed": args.data_seed}
        if args.num_impressions:
            overrides["num_impressions"] = args.num_impressions
        overrides.update(simulator_overrides(args.sim))
        if not os.path.exists(os.path.join(data, "meta.json")):
            simulate_dataset(data, SimulatorConfig(**overrides))
    with open(os.path.join(data, "meta.json")) as f:
        meta = json.load(f)
    simulated = "oracle_auc" in meta
    if not simulated and any(model == "well_specified" for _, model, _ in variants):
        parser.error("well_specified needs simulated data: drop it from --models with --data")
    oracle = [meta["oracle_auc"]] * len(seeds) if simulated else None
    # The ceiling re-simulates in memory from the settings of the data on disk (a reused
    # --workdir keeps its dataset whatever the flags say).
    sim_config = SimulatorConfig(**meta["settings"]) if simulated else None
    sim_columns = None
    for seed in seeds:
        for label, model, hp in variants:
            keras.backend.clear_session()
            if model == "well_specified":
                if sim_columns is None:
                    sim_columns = simulate(sim_config)
                metrics = fit_well_specified(sim_config, seed=seed, columns=sim_columns, **hp)
                per_seed[label].append(metrics)
                print(f"seed {seed} {label}: auc {metrics['auc']:.4f}", file=sys.stderr, flush=True)
                continue
            metrics = train_variant(
                data,
                workdir,
                seed,
                label,
                model,
                hp,
                epochs=args.epochs,
                early_stopping=args.early_stopping,
                monitor=args.monitor,
                optimizer_overrides=args.train,
            )
            per_seed[label].append(metrics)
            print(
                f"seed {seed} {label}: auc {metrics['auc']:.4f} gauc {metrics['gauc']:.4f} "
                f"(epochs {metrics['epochs_run']}, best {metrics.get('best_epoch', '-')})",
                file=sys.stderr,
                flush=True,
            )
    summary = summarise(per_seed)
    if simulated:
        for label, runs in per_seed.items():
            summary[label]["gap_to_oracle_mean"] = float(
                (np.array(oracle) - np.array([r["auc"] for r in runs])).mean()
            )
    if "wide_deep" in summary and simulated:
        base_gap = np.array(oracle) - np.array([r["auc"] for r in per_seed["wide_deep"]])
        for label, runs in per_seed.items():
            closed = 1 - (np.array(oracle) - np.array([r["auc"] for r in runs])) / base_gap
            summary[label]["wide_deep_gap_closed_mean"] = float(closed.mean())
    ceilings = [label for label, model, _ in variants if model == "well_specified"]
    if "wide_deep" in summary and ceilings:
        ceiling = np.array([r["auc"] for r in per_seed[ceilings[0]]])
        base = np.array([r["auc"] for r in per_seed["wide_deep"]])
        for label, runs in per_seed.items():
            closed = (np.array([r["auc"] for r in runs]) - base) / (ceiling - base)
            summary[label]["ceiling_gap_closed_mean"] = float(closed.mean())
    result: dict = {"data": data, "training_seeds": seeds}
    trained = [r for runs in per_seed.values() for r in runs if "validation" in r]
    if trained:  # the carve of widedeep.data.carve, the same for every run
        result.update(validation=trained[0]["validation"], monitor=trained[0].get("monitor"))
    if simulated:
        result.update(
            data_seed=args.data_seed,
            oracle_auc=meta["oracle_auc"],
            oracle_breakdown={
                k: v for k, v in meta["oracle"]["test"].items() if k.startswith("oracle_auc_")
            },
        )
    if args.baselines:
        result["baselines"] = run_baselines(data)["baselines"]
    result.update(
        summary=summary,
        per_seed_auc={label: [r["auc"] for r in runs] for label, runs in per_seed.items()},
        per_seed_gauc={
            label: [r["gauc"] for r in runs]
            for label, runs in per_seed.items()
            if "gauc" in runs[0]
        },
        per_seed_best_epoch={
            label: [r.get("best_epoch") for r in runs] for label, runs in per_seed.items()
        },
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
