"""The documentation's figures, drawn from the benchmark JSON committed in `benchmarks/results/`.

    python benchmarks/figures.py [--results benchmarks/results] [--out docs/figures]

Writes four PNGs, each titled with the JSON files it was drawn from:

* `quality.png`: test AUC and GAUC of every model and baseline per dataset
  (`quality-{sim,ml,kr}.json` from `quality.py --baselines`): the models' mean over training
  seeds with the seeds' min-max as error bars, the baselines' single value, and on simulated
  data the oracle's AUC and the learnable ceiling (`well_specified`) as lines;
* `validation-curves.png`: validation AUC and GAUC by epoch (`validation-curves-sim.json` from
  `validation_curves.py`), the epoch early stopping kept marked;
* `throughput.png`: training examples/s of the user's `fit` path, `fit` on arrays, the fastest
  peer and the MLP floor (`throughput-user.json` from `throughput.py --groups user`): the
  median as a bar, each round as a point;
* `serving-latency.png`: p50 and p99 latency by batch size per model and thread count
  (`serving-latency.json` from `serving_latency.py`).

The drawing is deterministic (Agg, matplotlib's default style, fixed size and resolution, no
software version in the PNG metadata): the same JSON gives the same bytes with the same
matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.style  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DPI = 100
BASELINES = ("constant", "popularity", "logistic_regression", "lr_history")
LABELS = {
    "constant": "constant (fit CTR)",
    "popularity": "item popularity",
    "logistic_regression": "logistic regression",
    "lr_history": "LR + history statistics",
    "wide_deep": "Wide & Deep",
    "wide_deep_seq": "Wide & Deep + sequences",
    "dfn": "DFN",
    "wide_deep_paper": "Wide & Deep, paper-sized",
    "well_specified": "learnable ceiling (well_specified)",
    "ours_user_fit": "widedeep: user's fit path",
    "ours_fit_arrays": "widedeep: fit on arrays",
    "tf_keras_legacy_peer": "fastest peer: tf-keras legacy",
    "mlp_floor": "MLP floor (compute only)",
    "user_pipeline": "the user's input pipeline alone",
}
THROUGHPUT_HIDDEN = ("peer_pipeline", "mlp_pipeline")
"""Floors of group `user` that enter its bound but are not drawn as bars."""
QUALITY_DATASETS = ("sim", "ml", "kr")
PEER = "tf_keras_legacy_peer"


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _title(fig: Figure, text: str, sources: list[str]) -> None:
    fig.suptitle(f"{text}\n{', '.join(sources)}", fontsize=10)


def quality_figure(results: dict[str, dict[str, Any]], sources: list[str]) -> Figure:
    """Test AUC (top) and GAUC (bottom) per dataset, one bar per model and baseline.

    Args:
        results: `{dataset: the JSON of quality.py}`, in the order the datasets are drawn.
        sources: the files they came from, for the title.
    """
    datasets = list(results)
    baselines = [b for b in BASELINES if any(b in r.get("baselines", {}) for r in results.values())]
    models: list[str] = []
    references: list[str] = []  # summary entries without GAUC (the learnable ceiling): lines
    for result in results.values():
        for name, s in result["summary"].items():
            target = models if "gauc_mean" in s else references
            if name not in target:
                target.append(name)
    entries = baselines + models
    fig = Figure(figsize=(11, 8), dpi=DPI)
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / len(entries)
    colors = matplotlib.colormaps["tab10"]
    for ax, metric in zip(axes, ("auc", "gauc"), strict=True):
        for j, name in enumerate(entries):
            xs, heights, low, high = [], [], [], []
            for i, result in enumerate(results.values()):
                if name in result.get("baselines", {}):  # deterministic: no seed spread
                    value = result["baselines"][name]["test"][metric]
                    seeds = [value]
                elif name in result["summary"]:
                    value = result["summary"][name][f"{metric}_mean"]
                    seeds = result[f"per_seed_{metric}"][name]
                else:
                    continue
                xs.append(i - 0.4 + (j + 0.5) * width)
                heights.append(value)
                low.append(value - min(seeds))
                high.append(max(seeds) - value)
            ax.bar(
                xs,
                heights,
                width,
                yerr=[low, high] if name in models else None,
                capsize=2,
                color=colors(j),
                label=_label(name),
                error_kw={"elinewidth": 1},
            )
        if metric == "auc":
            for i, result in enumerate(results.values()):
                summary = result["summary"]
                lines = [(n, summary[n]["auc_mean"]) for n in references if n in summary]
                if "oracle_auc" in result:
                    lines.append(("oracle", result["oracle_auc"]))
                for name, value in lines:
                    style = ":" if name == "oracle" else "--"
                    label = "oracle (true probabilities)" if name == "oracle" else _label(name)
                    ax.hlines(value, i - 0.45, i + 0.45, colors="black", linestyles=style)
                    ax.annotate(
                        f"{label} {value:.4f}",
                        (i - 0.45, value),
                        xytext=(0, 2),
                        textcoords="offset points",
                        fontsize=7,
                    )
        ax.set_ylabel(f"test {metric.upper()}")
        ax.set_ylim(0.45, None)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(range(len(datasets)), datasets)
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _title(
        fig,
        "Test AUC and GAUC: models as the mean over training seeds (error bar: min-max), "
        "baselines deterministic",
        sources,
    )
    fig.tight_layout()
    return fig


def validation_curves_figure(result: dict[str, Any], sources: list[str]) -> Figure:
    """Validation AUC and GAUC by epoch, one line per model; a star at the epoch kept.

    Args:
        result: the JSON of validation_curves.py.
        sources: the files it came from, for the title.
    """
    monitor = next(iter(result["runs"].values())).get("monitor")
    fig = Figure(figsize=(11, 4.5), dpi=DPI)
    axes = fig.subplots(1, 2)
    colors = matplotlib.colormaps["tab10"]
    for ax, metric in zip(axes, ("auc", "gauc"), strict=True):
        for j, (name, run) in enumerate(result["runs"].items()):
            values = run[f"validation_{metric}"]
            epochs = np.arange(1, len(values) + 1)
            test = run["test"][metric]
            label = f"{_label(name)} (test {metric.upper()} {test:.4f})"
            ax.plot(epochs, values, marker="o", markersize=3, color=colors(j), label=label)
            best = run.get("best_epoch")
            if best:
                ax.plot(best, values[best - 1], marker="*", markersize=12, color=colors(j))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(f"validation {metric.upper()}")
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(fontsize=8)
    _title(
        fig,
        f"Validation AUC and GAUC by epoch, training seed {result['seed']} "
        f"(star: the epoch early stopping kept, best {monitor}); {result['date']}, "
        f"{result['machine']}",
        sources,
    )
    fig.tight_layout()
    return fig


def throughput_figure(result: dict[str, Any], sources: list[str]) -> Figure:
    """Training examples/s per variant of throughput.py's group `user`: median bar, round points.

    Where the JSON has the group's `bound`, a dashed line marks its `cpu` bound (the cores busy
    with the user's pipeline plus the MLP's own work) and a dotted one 1.5x the peer's median.

    Args:
        result: the JSON of throughput.py (its `user` group is drawn).
        sources: the files it came from, for the title.
    """
    user = result["user"]
    variants = [name for name, v in user.items() if "median" in v and name not in THROUGHPUT_HIDDEN]
    ratios = user.get("vs_peer", {})
    fig = Figure(figsize=(9, 4), dpi=DPI)
    ax = fig.subplots()
    ys = np.arange(len(variants))[::-1]
    colors = ["tab:orange" if name == PEER else "tab:blue" for name in variants]
    ax.barh(ys, [user[name]["median"] for name in variants], color=colors, alpha=0.6)
    for y, name in zip(ys, variants, strict=True):
        rounds = user[name]["examples_per_sec"]
        ax.scatter(rounds, [y] * len(rounds), color="black", s=12, zorder=3)
        ratio = ratios.get(name, {}).get("ratio_of_medians")
        note = f"{user[name]['median']:,.0f}" + (f"  ({ratio:.2f}x peer)" if ratio else "")
        ax.annotate(
            note, (0, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8
        )
    bound = user.get("bound")
    if bound and PEER in user:
        ax.axvline(
            bound["cpu"],
            color="black",
            linestyle="--",
            linewidth=1,
            label="bound: cores busy with pipeline + MLP",
        )
        ax.axvline(
            1.5 * user[PEER]["median"],
            color="tab:red",
            linestyle=":",
            linewidth=1,
            label="target: 1.5x peer",
        )
        ax.legend(loc="upper right", fontsize=8)
    ax.set_yticks(ys, [_label(name) for name in variants])
    ax.set_xlabel("training examples/s (bar: median; points: each round, a fresh process)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.grid(axis="x", alpha=0.3)
    setup = result.get("setup", {})
    _title(
        fig,
        f"Training throughput, Wide & Deep at batch {setup.get('batch_size', '?')}; "
        f"{setup.get('machine', '')}",
        sources,
    )
    fig.tight_layout()
    return fig


def serving_latency_figure(result: dict[str, Any], sources: list[str]) -> Figure:
    """p50 (solid) and p99 (dashed) latency by batch size, one panel per model.

    Args:
        result: the JSON of serving_latency.py.
        sources: the files it came from, for the title.
    """
    rows = result["configurations"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    threads = list(dict.fromkeys(r["intra_op_threads"] for r in rows))
    fig = Figure(figsize=(4 * len(models), 4), dpi=DPI)
    axes = np.atleast_1d(fig.subplots(1, len(models), squeeze=False)[0])
    colors = matplotlib.colormaps["tab10"]
    for ax, model in zip(axes, models, strict=True):
        for j, count in enumerate(threads):
            mine = [r for r in rows if r["model"] == model and r["intra_op_threads"] == count]
            sizes = [r["batch_size"] for r in mine]
            for key, style in (("p50_ms", "-"), ("p99_ms", "--")):
                ax.plot(
                    sizes,
                    [r[key] for r in mine],
                    style,
                    marker="o",
                    markersize=3,
                    color=colors(j),
                    label=f"{key.split('_')[0]}, {count} thread{'s' if count > 1 else ''}",
                )
        ax.set_title(_label(model), fontsize=10)
        ax.set_xlabel("batch size (rows per request)")
        ax.set_ylabel("latency, ms")
        ax.set_ylim(0, None)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    loads = [r[k] for r in rows for k in ("load_average_before", "load_average_after") if k in r]
    load = f", load average {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    _title(
        fig,
        f"Serving latency through serving_default; {result.get('date', '')}, "
        f"{result.get('cpu_count', '?')} cpus{load}",
        sources,
    )
    fig.tight_layout()
    return fig


def _display(path: str) -> str:
    """A path as the title shows it: relative to the repository when inside it."""
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def _read(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def _one(paths: list[str]) -> dict[str, Any]:
    (path,) = paths
    return _read(path)


def _per_dataset(paths: list[str]) -> dict[str, dict[str, Any]]:
    """`{dataset: JSON}`, the dataset named by the file name after `quality-`."""
    return {
        os.path.basename(p).removeprefix("quality-").removesuffix(".json"): _read(p) for p in paths
    }


# PNG name: (JSON files in the results folder, how they are read, the figure they make).
FIGURES: dict[str, tuple[list[str], Callable[[list[str]], Any], Callable[..., Figure]]] = {
    "quality.png": ([f"quality-{d}.json" for d in QUALITY_DATASETS], _per_dataset, quality_figure),
    "validation-curves.png": (["validation-curves-sim.json"], _one, validation_curves_figure),
    "throughput.png": (["throughput-user.json"], _one, throughput_figure),
    "serving-latency.png": (["serving-latency.json"], _one, serving_latency_figure),
}


def write_figures(results_dir: str, out_dir: str) -> list[str]:
    """Draws every figure of `FIGURES` from the JSON in `results_dir`; returns the PNG paths."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, (files, load, draw) in FIGURES.items():
        paths = [os.path.join(results_dir, f) for f in files]
        with matplotlib.style.context("default"):
            fig = draw(load(paths), [_display(p) for p in paths])
            out = os.path.join(out_dir, name)
            fig.savefig(out, dpi=DPI, metadata={"Software": None})
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "figures"))
    args = parser.parse_args(argv)
    for path in write_figures(args.results, args.out):
        print(path)


if __name__ == "__main__":
    main()
