"""Preparation throughput: the engine of this tree against an earlier loader, same run, same log.

Writes (or reuses, `--data`) a SYNTHETIC KuaiRand-layout log of `--rows`
impressions (`public_layouts.write_kuairand`, two log files plus the side
tables), then prepares it `--repeats` times with each loader, each run in a
fresh process (so peak RSS is that run's): the current tree, and the loader of
git revision `--baseline` (default: the last commit that stored every sequence
in the records; it is exported with `git archive` into a temporary folder).
Prints JSON: per loader the median seconds of `prepare_kuairand` (files to
finished dataset directory, imports excluded), impressions/s, the median process
peak RSS, bytes on disk per impression (records and tables), and the ratio of
the medians; and whether the two datasets hold the same columns, row for row
(every schema input, label and feedback of both splits, as this tree's reader
yields them: the two formats differ on disk).

Example:

```
python benchmarks/prepare_throughput.py --rows 2200000 --repeats 3
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
BASELINE = "477fcb3"
"""The last commit whose datasets stored every row's sequences and side features in the records."""

_CHILD = """
import glob, json, os, resource, sys, time
from widedeep.data.kuairand import prepare_kuairand
data, out = sys.argv[1], sys.argv[2]
start = time.perf_counter()
meta = prepare_kuairand(
    sorted(glob.glob(os.path.join(data, "log_*.csv"))),
    glob.glob(os.path.join(data, "user_features_*.csv"))[0],
    glob.glob(os.path.join(data, "video_features_basic_*.csv"))[0],
    out, max_length=30, overwrite=True,
)
seconds = time.perf_counter() - start
size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(out, "**", "*.*"), recursive=True)
           if p.endswith((".tfrecord", ".npy")))
import widedeep
print(json.dumps({"package": os.path.dirname(widedeep.__file__), "seconds": seconds, "impressions": meta["impressions"], "bytes": size,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(tree: str, data: str, out: str) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, data, out],
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

    from widedeep.data.records import column_batches, load_dataset_dir

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
            column_batches(a, split, names, rows=65536),
            column_batches(b, split, names, rows=65536),
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

    results: dict[str, list[dict]] = {"engine": [], "baseline": []}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        for name, tree in (("engine", ROOT), ("baseline", baseline_tree)):
            results[name].append(_run(tree, data, os.path.join(work, f"out-{name}")))

    def summary(runs: list[dict]) -> dict:
        seconds = statistics.median(r["seconds"] for r in runs)
        n = runs[0]["impressions"]
        return {
            "seconds_median": round(seconds, 2),
            "seconds_all": [round(r["seconds"], 2) for r in runs],
            "impressions": n,
            "impressions_per_s": round(n / seconds),
            "peak_rss_mib_median": round(statistics.median(r["peak_rss_mib"] for r in runs)),
            "bytes_per_impression": round(runs[0]["bytes"] / n, 1),
        }

    engine, baseline = summary(results["engine"]), summary(results["baseline"])
    print(
        json.dumps(
            {
                "log_rows": args.rows if args.data is None else None,
                "data": data,
                "max_length": 30,
                "repeats": args.repeats,
                "cpus": os.cpu_count(),
                "load_average_at_end": os.getloadavg()[0],
                "engine": engine,
                "baseline": {"revision": args.baseline, **baseline},
                "speedup": round(baseline["seconds_median"] / engine["seconds_median"], 2),
                "same_columns": _same_columns(
                    os.path.join(work, "out-engine"), os.path.join(work, "out-baseline")
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
