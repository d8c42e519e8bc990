"""`benchmarks/figures.py`: each figure plots the numbers of its JSON, and the command writes the PNGs."""

from __future__ import annotations

import importlib
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _baseline(auc: float, gauc: float) -> dict:
    return {"test": {"auc": auc, "gauc": gauc, "logloss": 0.6}, "hyperparameters": {}}


def _model(per_seed_auc: list[float], per_seed_gauc: list[float]) -> dict:
    return {
        "auc_mean": float(np.mean(per_seed_auc)),
        "auc_spread": max(per_seed_auc) - min(per_seed_auc),
        "gauc_mean": float(np.mean(per_seed_gauc)),
        "gauc_spread": max(per_seed_gauc) - min(per_seed_gauc),
        "logloss_mean": 0.5,
    }


# The shapes of quality.py's JSON: a simulated dataset (oracle, learnable ceiling) and a log.
SEEDS = {
    "sim": {
        "auc": {"wide_deep": [0.70, 0.72, 0.71], "dfn": [0.75, 0.74, 0.78]},
        "gauc": {"wide_deep": [0.66, 0.69, 0.64], "dfn": [0.73, 0.70, 0.71]},
    },
    "kr": {
        "auc": {"wide_deep": [0.61, 0.63, 0.65], "dfn": [0.66, 0.67, 0.71]},
        "gauc": {"wide_deep": [0.58, 0.55, 0.56], "dfn": [0.57, 0.60, 0.59]},
    },
}
BASELINE_VALUES = {
    "sim": {"constant": (0.5, 0.5), "lr_history": (0.66, 0.62)},
    "kr": {"constant": (0.5, 0.5), "lr_history": (0.68, 0.57)},
}
ORACLE = 0.88
CEILING = [0.79, 0.80, 0.78]


def quality_json(dataset: str) -> dict:
    seeds = SEEDS[dataset]
    result = {
        "training_seeds": [0, 1, 2],
        "baselines": {name: _baseline(*v) for name, v in BASELINE_VALUES[dataset].items()},
        "summary": {name: _model(seeds["auc"][name], seeds["gauc"][name]) for name in seeds["auc"]},
        "per_seed_auc": dict(seeds["auc"]),
        "per_seed_gauc": dict(seeds["gauc"]),
    }
    if dataset == "sim":
        result["oracle_auc"] = ORACLE
        result["summary"]["well_specified"] = {"auc_mean": float(np.mean(CEILING))}
        result["per_seed_auc"]["well_specified"] = CEILING
    return result


CURVES = {
    "command": "python benchmarks/validation_curves.py",
    "date": "2026-01-01",
    "machine": "x86_64, 2 cpus, load 1.0",
    "seed": 0,
    "runs": {
        "wide_deep": {
            "validation_auc": [0.60, 0.65, 0.67, 0.66],
            "validation_gauc": [0.55, 0.58, 0.61, 0.60],
            "best_epoch": 3,
            "monitor": "val_auc",
            "test": {"auc": 0.66, "gauc": 0.60, "logloss": 0.5},
        },
        "dfn": {
            "validation_auc": [0.62, 0.70],
            "validation_gauc": [0.59, 0.64],
            "best_epoch": 2,
            "monitor": "val_auc",
            "test": {"auc": 0.69, "gauc": 0.63, "logloss": 0.5},
        },
    },
}
THROUGHPUT = {
    "setup": {"batch_size": 1024, "machine": "x86_64, 2 cpus, load 1.0"},
    "user": {
        "ours_user_fit": {"examples_per_sec": [70, 90, 80], "median": 80},
        "tf_keras_legacy_peer": {"examples_per_sec": [100, 120, 110], "median": 110},
        "mlp_floor": {"examples_per_sec": [200, 150, 210], "median": 200},
        "mlp_pipeline": {"examples_per_sec": [600, 650, 700], "median": 650},
        "bound": {"cpu": 170, "pipeline_alone": 300},
        "vs_peer": {
            "ours_user_fit": {"ratio_of_medians": 0.727},
            "mlp_floor": {"ratio_of_medians": 1.818},
        },
    },
}
LATENCY = {
    "data": "data/sim",
    "cpu_count": 2,
    "configurations": [
        {"model": m, "intra_op_threads": t, "batch_size": b, "p50_ms": p50, "p99_ms": p99}
        for m, t, b, p50, p99 in [
            ("wide_deep", 1, 1, 1.0, 2.0),
            ("wide_deep", 1, 50, 1.5, 3.0),
            ("wide_deep", 2, 1, 0.9, 1.9),
            ("wide_deep", 2, 50, 1.2, 2.5),
            ("dfn", 1, 1, 3.0, 5.0),
            ("dfn", 1, 50, 6.0, 9.0),
            ("dfn", 2, 1, 2.5, 4.0),
            ("dfn", 2, 50, 5.0, 8.0),
        ]
    ],
}


@pytest.fixture
def figures(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    return importlib.import_module("figures")


def _bars(ax) -> dict:
    """`{legend label: BarContainer}` of one axes."""
    return {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}


def test_quality_bars_are_the_means_and_error_bars_the_seed_spread(figures):
    results = {d: quality_json(d) for d in ("sim", "kr")}
    fig = figures.quality_figure(results, ["quality-sim.json", "quality-kr.json"])
    auc_ax, gauc_ax = fig.axes
    assert "quality-sim.json, quality-kr.json" in fig.get_suptitle()
    for ax, metric, column in ((auc_ax, "auc", 0), (gauc_ax, "gauc", 1)):
        bars = _bars(ax)
        assert set(bars) == {
            figures.LABELS[n] for n in ("constant", "lr_history", "wide_deep", "dfn")
        }
        for name in ("constant", "lr_history"):
            container = bars[figures.LABELS[name]]
            heights = [p.get_height() for p in container.patches]
            assert heights == [BASELINE_VALUES[d][name][column] for d in ("sim", "kr")]
            assert container.errorbar is None  # deterministic: no spread to draw
        for name in ("wide_deep", "dfn"):
            container = bars[figures.LABELS[name]]
            heights = [p.get_height() for p in container.patches]
            expected = [results[d]["summary"][name][f"{metric}_mean"] for d in ("sim", "kr")]
            assert heights == pytest.approx(expected, abs=1e-12)
            (segments,) = container.errorbar.lines[2]
            extents = [(seg[0][1], seg[1][1]) for seg in segments.get_segments()]
            seeds = [SEEDS[d][metric][name] for d in ("sim", "kr")]
            np.testing.assert_allclose(
                extents, [(min(s), max(s)) for s in seeds], rtol=0, atol=1e-12
            )
            # each bar sits over its dataset's tick
            centres = [p.get_x() + p.get_width() / 2 for p in container.patches]
            assert [round(c) for c in centres] == [0, 1]
    # the oracle and the learnable ceiling: lines over the simulated dataset's bars only
    lines = [seg for c in auc_ax.collections for seg in c.get_segments() if len(seg) == 2]
    flat = sorted((seg[0][1], seg[1][1], round(float(seg[:, 0].mean()))) for seg in lines)
    horizontal = [(y0, x) for y0, y1, x in flat if y0 == y1]
    np.testing.assert_allclose(horizontal, [(np.mean(CEILING), 0), (ORACLE, 0)], rtol=0, atol=1e-12)
    assert [t.get_text() for t in gauc_ax.get_xticklabels()] == ["sim", "kr"]


def test_validation_curves_plot_each_epoch_and_mark_the_kept_one(figures):
    fig = figures.validation_curves_figure(CURVES, ["validation-curves-sim.json"])
    title = fig.get_suptitle()
    assert "validation-curves-sim.json" in title and "2026-01-01" in title and "val_auc" in title
    for ax, metric in zip(fig.axes, ("auc", "gauc"), strict=True):
        curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]
        stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
        for line, star, run in zip(curves, stars, CURVES["runs"].values(), strict=True):
            values = run[f"validation_{metric}"]
            assert list(line.get_ydata()) == values
            assert list(line.get_xdata()) == list(range(1, len(values) + 1))
            assert f"{run['test'][metric]:.4f}" in line.get_label()
            best = run["best_epoch"]
            assert (star.get_xdata()[0], star.get_ydata()[0]) == (best, values[best - 1])


def test_throughput_bars_are_the_medians_and_points_the_rounds(figures):
    fig = figures.throughput_figure(THROUGHPUT, ["throughput-user.json"])
    (ax,) = fig.axes
    variants = ["ours_user_fit", "tf_keras_legacy_peer", "mlp_floor"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [figures.LABELS[n] for n in variants]
    (bars,) = ax.containers
    user = THROUGHPUT["user"]
    assert [p.get_width() for p in bars.patches] == [user[n]["median"] for n in variants]
    for points, name in zip(ax.collections, variants, strict=True):
        assert list(points.get_offsets()[:, 0]) == user[name]["examples_per_sec"]
    notes = [t.get_text() for t in ax.texts]
    assert notes == ["80  (0.73x peer)", "110", "200  (1.82x peer)"]
    bound, target = (line for line in ax.get_lines() if line.get_linestyle() in ("--", ":"))
    assert list(bound.get_xdata()) == [170, 170]
    assert list(target.get_xdata()) == [pytest.approx(165), pytest.approx(165)]  # 1.5 x 110


def test_serving_latency_lines_are_p50_and_p99_by_batch_size(figures):
    fig = figures.serving_latency_figure(LATENCY, ["serving-latency.json"])
    assert [ax.get_title() for ax in fig.axes] == [figures.LABELS["wide_deep"], "DFN"]
    for ax, model in zip(fig.axes, ("wide_deep", "dfn"), strict=True):
        for line in ax.get_lines():
            key, threads = line.get_label().split(", ")
            count = int(threads.split()[0])
            rows = [
                r
                for r in LATENCY["configurations"]
                if r["model"] == model and r["intra_op_threads"] == count
            ]
            assert list(line.get_xdata()) == [r["batch_size"] for r in rows]
            assert list(line.get_ydata()) == [r[f"{key}_ms"] for r in rows]
        assert len(ax.get_lines()) == 4  # p50 and p99 at one and two threads


def test_the_command_writes_the_four_pngs_byte_for_byte_again(figures, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    files = {
        f"quality-{d}.json": quality_json("sim" if d == "sim" else "kr")
        for d in ("sim", "ml", "kr")
    }
    files.update(
        {
            "validation-curves-sim.json": CURVES,
            "throughput-user.json": THROUGHPUT,
            "serving-latency.json": LATENCY,
        }
    )
    for name, content in files.items():
        (results / name).write_text(json.dumps(content))
    pngs = {}
    for run in ("first", "second"):
        figures.main(["--results", str(results), "--out", str(tmp_path / run)])
        pngs[run] = {p.name: p.read_bytes() for p in sorted((tmp_path / run).iterdir())}
    assert (
        sorted(pngs["first"])
        == sorted(figures.FIGURES)
        == [
            "quality.png",
            "serving-latency.png",
            "throughput.png",
            "validation-curves.png",
        ]
    )
    for name, data in pngs["first"].items():
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert b"Software" not in data, name
        assert data == pngs["second"][name], name


def test_validation_curves_collects_a_runs_metrics_json(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    validation_curves = importlib.import_module("validation_curves")
    run = CURVES["runs"]["wide_deep"]
    metrics = {
        **run["test"],
        "ctr": 0.3,
        "validation_auc": run["validation_auc"],
        "validation_gauc": run["validation_gauc"],
        "epochs_run": 4,
        "best_epoch": 3,
        "monitor": "val_auc",
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert validation_curves.collect(str(tmp_path)) == {**run, "epochs_run": 4}
