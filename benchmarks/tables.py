"""Markdown tables from the JSON that `quality.py` and `ladder.py` print: what the README shows.

    python benchmarks/tables.py quality benchmarks/results/quality-*.json
    python benchmarks/tables.py ladder benchmarks/results/ladder-*.json

`quality`: one row per model and baseline, one column per file (dataset): test AUC /
GAUC / log loss, the models' as the mean over training seeds with the min-max spread
of AUC and GAUC. `ladder`: one row per rung, the same three numbers per file.
"""

from __future__ import annotations

import argparse
import json
import os

BASELINES = ("constant", "popularity", "logistic_regression", "lr_history")


def _cell(mean: dict, spread: dict | None = None) -> str:
    text = f"{mean['auc']:.4f} / {mean['gauc']:.4f} / {mean['logloss']:.4f}"
    if spread:
        text += f" (±{spread['auc'] / 2:.4f} / ±{spread['gauc'] / 2:.4f})"
    return text


def _load(files: list[str]) -> dict[str, dict]:
    """`{dataset: result}`, the dataset named by the part of the file name after the first `-`."""
    results = {}
    for path in files:
        with open(path) as f:
            results[os.path.splitext(os.path.basename(path))[0].split("-", 1)[-1]] = json.load(f)
    return results


def quality_table(files: list[str]) -> str:
    """Models (means over seeds, half the min-max spread) and baselines, one column per file."""
    results = _load(files)
    names = list(results)
    rows: dict[str, dict[str, str]] = {}
    for name, result in results.items():
        for baseline, values in result.get("baselines", {}).items():
            rows.setdefault(baseline, {})[name] = _cell(values["test"])
        for label, s in result["summary"].items():
            if "gauc_mean" not in s:
                rows.setdefault(label, {})[name] = f"{s['auc_mean']:.4f} / - / -"
                continue
            mean = {"auc": s["auc_mean"], "gauc": s["gauc_mean"], "logloss": s["logloss_mean"]}
            spread = {"auc": s["auc_spread"], "gauc": s["gauc_spread"]}
            rows.setdefault(label, {})[name] = _cell(mean, spread)
    order = [b for b in BASELINES if b in rows] + [r for r in rows if r not in BASELINES]
    lines = [
        "| test AUC / GAUC / log loss | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row in order:
        lines.append(f"| {row} | " + " | ".join(rows[row].get(n, "") for n in names) + " |")
    return "\n".join(lines)


def ladder_table(files: list[str]) -> str:
    """One row per rung: AUC / GAUC / log loss means per file; rungs the defaults drop are marked."""
    results = _load(files)
    names = list(results)
    rows: dict[str, dict[str, str]] = {}
    kept: dict[str, bool] = {}
    for name, result in results.items():
        for rung in result["rungs"]:
            mean = {k: rung[f"{k}_mean"] for k in ("auc", "gauc", "logloss")}
            spread = {k: rung[f"{k}_spread"] for k in ("auc", "gauc")}
            seeds = len(rung["per_seed"])
            rows.setdefault(rung["name"], {})[name] = _cell(mean, spread if seeds > 1 else None)
            kept[rung["name"]] = rung["kept"]
    lines = [
        "| rung (adds one part) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row, cells in rows.items():
        label = row if kept[row] else f"{row} (not kept)"
        lines.append(f"| {label} | " + " | ".join(cells.get(n, "") for n in names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["quality", "ladder"])
    parser.add_argument("files", nargs="+", help="JSON files, named <kind>-<dataset>.json")
    args = parser.parse_args()
    table = quality_table if args.kind == "quality" else ladder_table
    print(table(args.files))


if __name__ == "__main__":
    main()
