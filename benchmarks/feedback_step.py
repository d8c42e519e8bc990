"""Forward + backward time of DFN's feedback module alone (`FeedbackInteraction`).

One step = the module on a batch of random target and click / unclick / dislike item vectors
(random valid lengths, `--valid-fraction` of the positions on average: the module computes on
the valid items only), a weighted sum of its output as the loss, and the gradients of every
weight and of the target and item vectors (in DFN they flow on to the embeddings), all inside
one `tf.function`, at `DFN_DEFAULTS`' settings (model width
16, 2 heads, target pooling, pre-norm). Prints JSON: the median and minimum milliseconds per
step. (XLA cannot compile the module: it works on the valid items, whose number varies.)

Usage:
    python benchmarks/feedback_step.py [--batch 512] [--length 30] [--item-dim 16]
        [--valid-fraction 0.32] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from widedeep.layers import FeedbackInteraction  # noqa: E402
from widedeep.models.dfn import DFN_DEFAULTS  # noqa: E402
from widedeep.schema import FEEDBACK_SEQUENCES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument(
        "--item-dim", type=int, default=16, help="2 item fields x 8 (the simulator's default)"
    )
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=0.32,
        help="mean share of valid positions (simulator: 0.32; KuaiRand dev log: 0.04)",
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    if not 0.0 <= args.valid_fraction <= 1.0:
        parser.error(f"--valid-fraction must be in [0, 1]; got {args.valid_fraction}")

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs = {"target": tf.constant(rng.normal(size=(args.batch, args.item_dim)), tf.float32)}
    for name in FEEDBACK_SEQUENCES:
        shape = (args.batch, args.length, args.item_dim)
        inputs[name] = tf.constant(rng.normal(size=shape), tf.float32)
        most = min(args.length, round(2 * args.valid_fraction * args.length))
        lengths = rng.integers(0, most + 1, size=args.batch)
        inputs[f"{name}_mask"] = tf.constant(np.arange(args.length)[None] < lengths[:, None])
    module = FeedbackInteraction(
        model_dim=DFN_DEFAULTS["model_dim"],
        num_heads=DFN_DEFAULTS["num_heads"],
        ffn_multiplier=DFN_DEFAULTS["ffn_multiplier"],
        pooling=DFN_DEFAULTS["pooling"],
        norm_first=DFN_DEFAULTS["norm_first"],
        attention_hidden_units=DFN_DEFAULTS["attention_hidden_units"],
    )
    module(inputs)
    weights = tf.constant(rng.normal(size=(args.batch, module.output_dim)), tf.float32)

    def step(batch: dict[str, tf.Tensor]) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            vectors = [batch["target"], *(batch[name] for name in FEEDBACK_SEQUENCES)]
            tape.watch(vectors)
            loss = tf.reduce_sum(module(batch, training=True) * weights)
        return tape.gradient(loss, [*module.trainable_variables, *vectors])

    variants = {"graph": tf.function(step)}
    results = {}
    for name, fn in variants.items():
        for _ in range(args.warmup):
            fn(inputs)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            fn(inputs)[0].numpy()
            times.append(1000 * (time.perf_counter() - start))
        results[name] = {
            "median_ms": round(float(np.median(times)), 2),
            "min_ms": round(float(np.min(times)), 2),
        }
    print(
        json.dumps(
            {
                "batch": args.batch,
                "length": args.length,
                "item_dim": args.item_dim,
                "valid_fraction": args.valid_fraction,
                "steps": args.steps,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "variants": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
