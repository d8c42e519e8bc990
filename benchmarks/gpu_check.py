"""Training and serving speed on a GPU, printing JSON; does nothing without one.

Never part of the tests or CI: it needs a GPU and several minutes. Where TensorFlow sees
no GPU it prints `{"skipped": ...}` and exits 0. With one, on the same simulated data:

* training (`throughput.run_simulated`): DFN and Wide & Deep at their defaults, our
  optimizers, `make_dataset` from disk, and DFN's stock-Keras baselines, examples/s per
  epoch after a warm-up epoch, with the `dfn / wide_deep` ratio;
* the standard Wide & Deep workload (`throughput.run_standard`, `--standard-rows` rows):
  ours against the fastest peer (tf-keras `WideDeepModel` with the legacy optimizers)
  and the other stock baselines, when `--standard-rows > 0`;
* serving (`serving_latency.py`, one process per model set): p50 / p99 latency of the
  exported SavedModels of W&D and DFN for batches of 1, 100 and 1000 rows.

Usage:
    python benchmarks/gpu_check.py [--impressions 200000] [--standard-rows 200000]
        [--rounds 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=200_000)
    parser.add_argument("--standard-rows", type=int, default=200_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="epochs per variant, first is warm-up"
    )
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        result: dict[str, Any] = {"skipped": "TensorFlow sees no GPU on this machine"}
        print(json.dumps(result))
        return result

    import throughput

    details = tf.config.experimental.get_device_details(gpus[0])
    result = {
        "device": details.get("device_name", gpus[0].name),
        "gpus": len(gpus),
        "tensorflow": tf.__version__,
    }
    with tempfile.TemporaryDirectory(prefix="widedeep-gpu-") as tmp:
        workdir = args.workdir or tmp
        result["training_simulated"] = throughput.run_simulated(
            workdir, args.impressions, args.batch_size, args.rounds
        )
        if args.standard_rows > 0:
            data_dir = os.path.join(workdir, "standard")
            _, columns = throughput.write_standard_dataset(data_dir, args.standard_rows)
            result["training_standard"] = throughput.run_standard(data_dir, columns, args.rounds)
        serving = subprocess.run(
            [
                sys.executable,
                os.path.join(os.path.dirname(os.path.abspath(__file__)), "serving_latency.py"),
                "--data",
                os.path.join(workdir, "simulated"),
                "--workdir",
                os.path.join(workdir, "serving"),
                "--batch-sizes",
                "1,100,1000",
                "--threads",
                "2",
                "--models",
                "wide_deep,dfn",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        result["serving"] = (
            json.loads(serving.stdout)
            if serving.returncode == 0
            else {"failed": serving.returncode, "stderr_tail": serving.stderr[-2000:]}
        )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
