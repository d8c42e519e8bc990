"""Preparation throughput and memory: this tree's engine against an earlier loader, same run.

Writes (or reuses, `--data`) a SYNTHETIC KuaiRand-layout log of `--rows`
impressions (`public_layouts.write_kuairand`, two log files plus the side
tables), then prepares it `--repeats` times with each loader, each run in a
fresh process (so peak RSS is that run's): the current tree at its default
memory limit, the current tree at `--small-limit` MiB (the log sorted out of
core through a scratch folder), and the loader of git revision `--baseline`
(default: the tree before the out-of-core engine; exported with `git archive`
into a temporary folder). With `--larger DIR` (a longer log of the same layout)
the current tree also prepares that one at both limits, to show how peak memory
grows with the log's length at each.

Prints JSON: per run kind the median seconds of `prepare_kuairand` (files to
finished dataset directory, imports excluded), impressions/s, the median process
peak RSS (about 650 MiB of it is importing TensorFlow, which the writer needs),
bytes on disk per impression (records and tables), the ratio of the medians; and
whether the datasets hold the same columns, row for row (every schema input,
label and feedback of both splits, as this tree's reader yields them).

Example:

```
python benchmarks/prepare_throughput.py --rows 2200000 --repeats 3 --larger LOG4M
```
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BASELINE = "7b4a7f0"
"""The last commit before the out-of-core engine (it held and sorted the whole log in memory)."""

_CHILD = """
import glob, json, os, resource, sys, time
from widedeep.data.kuairand import prepare_kuairand
data, out, limit = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
meta = prepare_kuairand(
    sorted(glob.glob(os.path.join(data, "log_*.csv"))),
    glob.glob(os.path.join(data, "user_features_*.csv"))[0],
    glob.glob(os.path.join(data, "video_features_basic_*.csv"))[0],
    out, max_length=30, overwrite=True, **({"memory_limit": int(limit)} if limit else {}),
)
seconds = time.perf_counter() - start
size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(out, "**", "*.*"), recursive=True)
           if p.endswith((".tfrecord", ".npy")))
import widedeep
print(json.dumps({"package": os.path.dirname(widedeep.__file__), "seconds": seconds, "impressions": meta["impressions"], "bytes": size, "spilled": meta.get("spilled"),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(tree: str, data: str, out: str, limit: int | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, data, out, str(limit or "")],
        env=env,
        capture_output=True,
        text=True,
        cwd=tree,  # `python -c` puts the working directory first on sys.path: it must be `tree`
    )
    if done.returncode:
        raise SystemExit(f"prepare failed in {tree}:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if os.path.realpath(os.path.dirname(result.pop("package"))) != os.path.realpath(tree):
        raise SystemExit(f"the run meant for {tree} imported widedeep from elsewhere")
    return result


def _same_columns(a: str, b: str) -> bool:
    """Whether two dataset directories yield the same columns, row for row, through this reader."""
    sys.path.insert(0, ROOT)
    import numpy as np

    from widedeep.data.reader import load_dataset_dir, read_split

    schema, meta = load_dataset_dir(a)
    other = load_dataset_dir(b)[1]["splits"]
    if {s: info["examples"] for s, info in meta["splits"].items()} != {
        s: info["examples"] for s, info in other.items()
    }:
        return False
    names = [*schema.input_signature(), schema.label, schema.feedback]
    for split in meta["splits"]:
        if not meta["splits"][split]["examples"]:
            continue
        pairs = zip(
            read_split(a, split, names, group_rows=65536),
            read_split(b, split, names, group_rows=65536),
            strict=True,
        )
        for x, y in pairs:
            for name in names:
                u, v = x[name].numpy(), y[name].numpy()
                if u.shape != v.shape or not np.array_equal(u, v, equal_nan=u.dtype.kind == "f"):
                    return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", help="an existing log folder to reuse (else one is written)")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the other loader")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument(
        "--small-limit", type=int, default=128, help="MiB for the out-of-core runs (default 128)"
    )
    parser.add_argument("--larger", help="a longer log of the same layout, prepared at both limits")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="prepare-throughput-")
    data = args.data
    if data is None:
        sys.path.insert(0, HERE)
        from public_layouts import kuairand_config, write_kuairand

        data = os.path.join(work, "log")
        write_kuairand(data, kuairand_config(args.rows))
    baseline_tree = os.path.join(work, "baseline")
    os.makedirs(baseline_tree, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", ROOT, "archive", args.baseline, "widedeep"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", baseline_tree], input=archive.stdout, check=True)

    kinds = {
        "engine": (ROOT, data, None),
        "engine_small_limit": (ROOT, data, args.small_limit),
        "baseline": (baseline_tree, data, None),
    }
    if args.larger:
        kinds["larger_engine"] = (ROOT, args.larger, None)
        kinds["larger_engine_small_limit"] = (ROOT, args.larger, args.small_limit)
    results: dict[str, list[dict]] = {name: [] for name in kinds}
    for _ in range(args.repeats):  # interleaved, so all see the same machine load
        for name, (tree, log, limit) in kinds.items():
            results[name].append(_run(tree, log, os.path.join(work, f"out-{name}"), limit))

    def summary(runs: list[dict], limit: int | None) -> dict:
        seconds = statistics.median(r["seconds"] for r in runs)
        n = runs[0]["impressions"]
        return {
            "memory_limit_mib": limit,
            "spilled": runs[0]["spilled"],
            "seconds_median": round(seconds, 2),
            "seconds_all": [round(r["seconds"], 2) for r in runs],
            "impressions": n,
            "impressions_per_s": round(n / seconds),
            "peak_rss_mib_median": round(statistics.median(r["peak_rss_mib"] for r in runs)),
            "bytes_per_impression": round(runs[0]["bytes"] / n, 1),
        }

    summaries = {name: summary(results[name], kinds[name][2]) for name in kinds}
    summaries["baseline"]["revision"] = args.baseline
    out = {name: os.path.join(work, f"out-{name}") for name in kinds}
    print(
        json.dumps(
            {
                "log_rows": args.rows if args.data is None else None,
                "data": data,
                "larger": args.larger,
                "max_length": 30,
                "repeats": args.repeats,
                "cpus": os.cpu_count(),
                "load_average_at_end": os.getloadavg()[0],
                **summaries,
                "speedup": round(
                    summaries["baseline"]["seconds_median"] / summaries["engine"]["seconds_median"],
                    2,
                ),
                "same_columns_as_baseline": _same_columns(out["engine"], out["baseline"]),
                "same_columns_small_limit": _same_columns(out["engine_small_limit"], out["engine"]),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
