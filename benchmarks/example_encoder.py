"""Record encoding: protobuf's `tf.train.Example` against the earlier hand-written encoder.

The dataset writer serialises each block of `rows_per_record` rows as one
`tf.train.Example` (`widedeep.data.example_encoder.encode_records`, built with the
protobuf library). It used to serialise them with a hand-written, vectorised numpy
encoder of the wire format; that encoder is taken from git revision `--hand-revision`
(`git show`, into a temporary folder) and swapped in for the writer's `encode_records`
in a child process, so the product carries no switch for it.

Two workloads: `widedeep prepare kuairand` on a KuaiRand log (`--data`, the dev log
by default) and `widedeep simulate --seed 3`. Prints JSON with, per workload:

- `encode_only`: one child runs the command once; for every chunk the writer
  encodes, both encoders encode it `--rounds` times, alternating which goes first,
  and the records are checked to be byte-identical. Rows/s of each encoder alone
  (median over rounds of the summed chunk times) and their ratio.
- `end_to_end`: the command with each encoder, each run in a fresh process,
  alternated for `--rounds` rounds: the median process wall time (what a user
  waits for, imports included), the median time of `widedeep.cli.main` alone
  (imports excluded) and `hand_speedup` (library median / hand median) of both;
  `same_files`: every file of the two datasets has the same bytes.

Example:

```
nice python benchmarks/example_encoder.py --rounds 3
```
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HAND_REVISION = "7be8a27"
"""The last commit whose writer used the hand-written encoder."""
DEV_LOG = "/work/shared/data/kuairand-pure-dev"

_CHILD = """
import importlib.util, json, sys, time
mode, variant, hand_path, result_path, rounds, *argv = sys.argv[1:]
import widedeep.data.writer as writer
from widedeep.data.example_encoder import encode_records as library
spec = importlib.util.spec_from_file_location("hand_example_encoder", hand_path)
hand_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hand_module)

def hand(columns, num_rows, rows_per_record):
    # The earlier writer sliced the records out of one buffer the same way.
    buffer, ends = hand_module.encode_records(columns, num_rows, rows_per_record)
    starts = [0, *ends.tolist()[:-1]]
    return [buffer[a:b] for a, b in zip(starts, ends.tolist())]

encoders = {"hand": hand, "library": library}
stats = {"rows": 0, "records": 0, "identical": True, "hand": [0.0] * int(rounds),
         "library": [0.0] * int(rounds)}

def both(columns, num_rows, rows_per_record):
    out = {}
    for r in range(int(rounds)):
        for name in (("hand", "library") if r % 2 == 0 else ("library", "hand")):
            start = time.perf_counter()
            out[name] = encoders[name](columns, num_rows, rows_per_record)
            stats[name][r] += time.perf_counter() - start
        stats["identical"] &= out["hand"] == out["library"]
    stats["rows"] += num_rows
    stats["records"] += len(out["library"])
    return out["library"]

writer.encode_records = both if mode == "encode" else encoders[variant]
from widedeep.cli import main
start = time.perf_counter()
code = main(argv)
stats["command_seconds"] = time.perf_counter() - start
with open(result_path, "w") as f:
    json.dump(stats, f)
sys.exit(code)
"""


def _commands(data: str, out: str) -> dict[str, list[str]]:
    return {
        "kuairand": [
            "prepare",
            "kuairand",
            "--log",
            os.path.join(data, "log_standard_4_25_to_4_30_pure.csv"),
            "--users",
            os.path.join(data, "user_features_pure.csv"),
            "--videos",
            os.path.join(data, "video_features_basic_pure.csv"),
            "--out",
            out,
        ],
        "simulate": ["simulate", "--out", out, "--seed", "3"],
    }


def _child(mode: str, variant: str, hand: str, rounds: int, argv: list[str], tmp: str) -> dict:
    """Runs one command in a fresh process; its stats, plus the process's wall seconds."""
    result = os.path.join(tmp, "result.json")
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-c", _CHILD, mode, variant, hand, result, str(rounds), *argv]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} ({variant}) failed:\n{done.stderr[-3000:]}")
    with open(result) as f:
        stats = json.load(f)
    return {**stats, "process_seconds": seconds}


def _digests(folder: str) -> dict[str, str]:
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _hand_encoder(revision: str, tmp: str) -> str:
    source = subprocess.run(
        ["git", "show", f"{revision}:widedeep/data/example_encoder.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = os.path.join(tmp, "hand_example_encoder.py")
    with open(path, "w") as f:
        f.write(source)
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default=DEV_LOG, help="a KuaiRand-Pure folder")
    parser.add_argument("--hand-revision", default=HAND_REVISION)
    parser.add_argument(
        "--workloads", default="kuairand,simulate", help="comma-separated: kuairand, simulate"
    )
    args = parser.parse_args(argv)
    result: dict = {
        "hand_revision": args.hand_revision,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        hand = _hand_encoder(args.hand_revision, tmp)
        out = os.path.join(tmp, "dataset")
        commands = _commands(args.data, out)
        for workload in args.workloads.split(","):
            command = commands[workload]
            print(f"{workload}: encode only", file=sys.stderr)
            stats = _child("encode", "", hand, args.rounds, command, tmp)
            shutil.rmtree(out)
            hand_s, library_s = (
                statistics.median(stats["hand"]),
                statistics.median(stats["library"]),
            )
            encode_only = {
                "rows": stats["rows"],
                "records": stats["records"],
                "hand_rows_per_s": round(stats["rows"] / hand_s),
                "library_rows_per_s": round(stats["rows"] / library_s),
                "hand_speedup": round(library_s / hand_s, 2),
                "identical": stats["identical"],
            }
            runs: dict[str, list[dict]] = {"hand": [], "library": []}
            digests: dict[str, dict] = {}
            for r in range(args.rounds):
                for variant in ("hand", "library") if r % 2 == 0 else ("library", "hand"):
                    print(f"{workload}: round {r + 1}, {variant}", file=sys.stderr)
                    runs[variant].append(_child("run", variant, hand, 1, command, tmp))
                    digests.setdefault(variant, _digests(out))
                    shutil.rmtree(out)
            end_to_end: dict = {}
            for key in ("process_seconds", "command_seconds"):
                medians = {v: statistics.median(run[key] for run in runs[v]) for v in runs}
                end_to_end[key] = {
                    **{v: round(m, 3) for v, m in medians.items()},
                    "hand_speedup": round(medians["library"] / medians["hand"], 3),
                    "all": {v: [round(run[key], 3) for run in runs[v]] for v in runs},
                }
            end_to_end["same_files"] = digests["hand"] == digests["library"]
            end_to_end["files"] = len(digests["hand"])
            result[workload] = {"encode_only": encode_only, "end_to_end": end_to_end}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
