"""Where a training step's time goes: TensorFlow's profiler over a few steps, summed by layer; prints JSON.

Builds `build_dfn` or `build_wide_deep` at their defaults on the training rows of a dataset
directory (e.g. the simulator's default data), compiled with one step per execution so every
step is traced alike, trains one warm-up epoch over `--rows` rows, then profiles one more epoch
with `tf.profiler.experimental` and reads the trace (`XSpace`) back. Each executed op is
attributed to the scope its name starts with (`dfn/feedback`, `gradient_tape/dfn/feedback` for
its gradient, `adagrad`, ...). The JSON gives, per scope, the ops executed per step and the
milliseconds per step (summed over TensorFlow's compute threads, so it can exceed the wall
time), sorted by time, and the totals.

On a CPU a step of a model with many small ops is bound by the executor's per-op cost more
than by arithmetic: `ops_per_step` is the number to cut.

Usage:
    python benchmarks/step_profile.py --data DIR [--model dfn] [--rows 16384] [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import tempfile
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from fit_workload import SIMULATED_BATCH_SIZE, labels, load_columns, model_inputs  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from widedeep import build_dfn, build_wide_deep  # noqa: E402


def scope_of(op_name: str) -> str:
    """`StatefulPartitionedCall/dfn_1/feedback_1/add:AddV2` -> `dfn/feedback`: the first two
    name scopes below the function call (three for `gradient_tape/...`), without Keras' numbered
    suffixes."""
    parts = op_name.split(":")[0].split("/")
    while parts and parts[0] in ("StatefulPartitionedCall", "PartitionedCall"):
        parts = parts[1:]
    depth = 3 if parts and parts[0] == "gradient_tape" else 2
    return re.sub(r"_\d+(?=/|$)", "", "/".join(parts[:depth]))


_OP_EVENT = re.compile(r"[^:\s]+:\w+")  # "name/scope/op:OpType"; executor events are not ops


def op_times(logdir: str) -> tuple[collections.Counter, collections.Counter]:
    """Milliseconds and counts of the ops executed on TensorFlow's compute threads, by scope."""
    (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    milliseconds: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if not _OP_EVENT.fullmatch(name):
                    continue
                milliseconds[scope_of(name)] += event.duration_ps / 1e9
                counts[scope_of(name)] += 1
    return milliseconds, counts


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a dataset directory with DFN's sequences")
    parser.add_argument("--model", choices=("dfn", "wide_deep"), default="dfn")
    parser.add_argument("--rows", type=int, default=16384, help="rows per epoch")
    parser.add_argument("--top", type=int, default=25, help="scopes listed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    schema, columns = load_columns(args.data)
    columns = {name: values[: args.rows] for name, values in columns.items()}
    dataset = (
        tf.data.Dataset.from_tensor_slices(
            (model_inputs(schema, columns), labels(columns, schema.label))
        )
        .batch(SIMULATED_BATCH_SIZE)
        .cache()
    )
    steps = -(-len(next(iter(columns.values()))) // SIMULATED_BATCH_SIZE)
    model = (build_dfn if args.model == "dfn" else build_wide_deep)(schema)
    model.compile(steps_per_execution=1)
    model.fit(dataset, epochs=1, verbose=0)  # traces and warms up
    with tempfile.TemporaryDirectory(prefix="widedeep-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(dataset, epochs=1, verbose=0)
        tf.profiler.experimental.stop()
        milliseconds, counts = op_times(logdir)
    result = {
        "model": args.model,
        "data": args.data,
        "steps": steps,
        "batch_size": SIMULATED_BATCH_SIZE,
        "ops_per_step": round(sum(counts.values()) / steps, 1),
        "op_ms_per_step": round(sum(milliseconds.values()) / steps, 2),
        "scopes": [
            {
                "scope": scope,
                "ms_per_step": round(ms / steps, 3),
                "ops_per_step": round(counts[scope] / steps, 1),
            }
            for scope, ms in milliseconds.most_common(args.top)
        ],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
