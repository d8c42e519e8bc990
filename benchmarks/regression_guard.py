"""Times this tree against git refs on the same workloads, in fresh processes, and prints JSON ratios.

Run it before every change that touches the model, the layers, the optimizers or the pipeline.
Each ref is checked out into a temporary `git worktree` (under the system's temp directory,
removed at the end). `benchmarks/fit_workload.py` of *this* tree is the one workload script,
run under every tree with `PYTHONPATH` pointing to it, so only widedeep differs:

* `wide_deep`: the user's `fit` path of the standard Wide & Deep workload (200k rows, batch 1024;
  `fit_workload.py --variant wide_deep`).
* `dfn`: `build_dfn(schema)` at its defaults on the training rows of the simulator's default
  data (`widedeep simulate`, simulated once with this tree and handed to every tree as numpy
  arrays; `fit_workload.py --variant dfn`).

Every round runs each workload once under each tree, the trees' order rotating round by round.
Printed per workload: each tree's examples/s per round and median, and per ref
`ratio_of_medians` (this tree / ref) and `median_of_round_ratios` (the ratio within each round,
where machine noise hits both alike, then the median): above 1 this tree is faster.

Usage:
    python benchmarks/regression_guard.py [--ref REF ...] [--rounds 3] [--workloads wide_deep,dfn]

`--ref` may be given several times (default: the last tag, else `HEAD~5`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOAD_SCRIPT = os.path.join(REPO, "benchmarks", "fit_workload.py")
WORKLOADS = ("wide_deep", "dfn")
CURRENT = "current"


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", REPO, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def default_ref() -> str:
    """The last tag reachable from HEAD, else `HEAD~5`."""
    try:
        return git("describe", "--tags", "--abbrev=0")
    except subprocess.CalledProcessError:
        return "HEAD~5"


def add_worktree(ref: str, parent: str) -> str:
    """Checks `ref` out (detached) into a new worktree under `parent`; returns its path."""
    try:
        commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"--ref {ref}: not a commit of {REPO}") from None
    path = os.path.join(parent, commit[:12])
    git("worktree", "add", "--detach", path, commit)
    return path


def simulated_columns(out_dir: str, python: str) -> str:
    """The simulator's default data, simulated with this tree, exported as numpy arrays."""
    data = os.path.join(out_dir, "simulated")
    env = {**os.environ, "PYTHONPATH": REPO}
    subprocess.run(
        [python, "-m", "widedeep.cli", "simulate", "--out", data],
        env=env,
        check=True,
        capture_output=True,
    )
    columns = os.path.join(out_dir, "simulated_columns")
    code = (
        f"import sys; sys.path.insert(0, {os.path.dirname(WORKLOAD_SCRIPT)!r}); "
        f"import fit_workload; fit_workload.export_columns({data!r}, {columns!r})"
    )
    subprocess.run([python, "-c", code], env=env, check=True, capture_output=True)
    return columns


def run_workload(
    python: str, script: str, tree: str, workload: str, args: argparse.Namespace, data: str | None
) -> dict[str, Any]:
    """One fresh process of `fit_workload.py` under `tree`; its JSON result."""
    command = [python, script, "--variant", workload, "--epochs", str(args.epochs)]
    command += ["--rows", str(args.rows)] if workload == "wide_deep" else ["--data", data]
    env = {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{workload} under {tree} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not str(result["widedeep"]).startswith(tree):
        raise SystemExit(f"{workload} imported {result['widedeep']}, not the tree {tree}")
    return result


def summarise(rates: dict[str, list[float]], refs: list[str]) -> dict[str, Any]:
    current = rates[CURRENT]
    summary: dict[str, Any] = {
        "examples_per_sec": {name: [round(r) for r in values] for name, values in rates.items()},
        "median_examples_per_sec": {
            name: round(float(np.median(values))) for name, values in rates.items()
        },
        "current_vs_ref": {},
    }
    for ref in refs:
        summary["current_vs_ref"][ref] = {
            "ratio_of_medians": round(float(np.median(current) / np.median(rates[ref])), 3),
            "median_of_round_ratios": round(
                float(np.median([a / b for a, b in zip(current, rates[ref], strict=True)])), 3
            ),
        }
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", action="append", default=None, help="default: last tag or HEAD~5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--rows", type=int, default=200_000, help="rows of wide_deep")
    parser.add_argument("--epochs", type=int, default=4, help="per process; the first is warm-up")
    args = parser.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"--workloads: unknown {unknown}; choose from {list(WORKLOADS)}")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1. Received: {args.rounds}")
    refs = args.ref or [default_ref()]
    python = sys.executable
    parent = tempfile.mkdtemp(prefix="widedeep-guard-")
    trees: dict[str, str] = {}
    try:
        script = os.path.join(parent, "fit_workload.py")
        shutil.copy(WORKLOAD_SCRIPT, script)  # outside every tree: PYTHONPATH decides
        trees[CURRENT] = REPO
        for ref in refs:
            trees[ref] = add_worktree(ref, parent)
        data = simulated_columns(parent, python) if "dfn" in workloads else None
        rates: dict[str, dict[str, list[float]]] = {w: {t: [] for t in trees} for w in workloads}
        names = list(trees)
        start = time.perf_counter()
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for workload in workloads:
                for name in order:
                    result = run_workload(python, script, trees[name], workload, args, data)
                    rates[workload][name].append(result["examples_per_sec"])
                    print(
                        f"[round {r}] {workload} {name}: {result['examples_per_sec']:,} ex/s",
                        file=sys.stderr,
                        flush=True,
                    )
        results = {
            "setup": {
                "current": git("rev-parse", "--short", "HEAD")
                + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else ""),
                "refs": {ref: git("rev-parse", "--short", ref) for ref in refs},
                "rounds": args.rounds,
                "epochs": args.epochs,
                "wide_deep_rows": args.rows,
                "minutes": round((time.perf_counter() - start) / 60, 1),
                "load_at_end": round(os.getloadavg()[0], 1),
            },
            **{w: summarise(rates[w], refs) for w in workloads},
        }
    finally:
        for ref in refs:
            if ref in trees:
                subprocess.run(
                    ["git", "-C", REPO, "worktree", "remove", "--force", trees[ref]],
                    capture_output=True,
                    check=False,
                )
        shutil.rmtree(parent, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
