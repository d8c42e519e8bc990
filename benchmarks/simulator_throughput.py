"""Throughput of the simulator and the dataset writer: simulate + write N impressions.

Usage:

```
python benchmarks/simulator_throughput.py --impressions 1000000
```

Prints one JSON line: `{"impressions", "seconds", "impressions_per_sec", "peak_rss_mib", ...}`.
Peak RSS is the process's `ru_maxrss` (TensorFlow's import included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from widedeep.data.simulator import SimulatorConfig, simulate_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    config = dataclasses.replace(SimulatorConfig(seed=args.seed), num_impressions=args.impressions)
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        meta = simulate_dataset(out_dir, config, progress=args.progress)
        seconds = time.perf_counter() - start
        size = sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(out_dir)
            for name in names
        )
    result = {
        "impressions": args.impressions,
        "seconds": round(seconds, 2),
        "impressions_per_sec": round(args.impressions / seconds),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "dataset_mib": round(size / 2**20, 1),
        "sequence_length": config.max_length,
        "oracle_auc": round(meta["oracle_auc"], 4),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
