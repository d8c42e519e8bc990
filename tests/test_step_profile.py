"""`benchmarks/step_profile.py`: ops read back from TensorFlow's profiler and summed by layer scope."""

from __future__ import annotations

import importlib
import os

import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    return importlib.import_module("step_profile")


def test_scope_of_keeps_two_levels_and_the_gradient_prefix(monkeypatch):
    scope_of = _module(monkeypatch).scope_of
    assert scope_of("StatefulPartitionedCall/dfn_1/feedback_1/add_18:AddV2") == "dfn/feedback"
    assert (
        scope_of("StatefulPartitionedCall/gradient_tape/dfn_1/deep_1/dense_0_1/MatMul:MatMul")
        == "gradient_tape/dfn/deep"
    )
    assert scope_of("StatefulPartitionedCall/adagrad/Square_3:Square") == "adagrad/Square"
    assert scope_of("StatefulPartitionedCall/Unique:Unique") == "Unique"


def test_op_times_counts_each_executed_op_once_per_call(monkeypatch, tmp_path):
    step_profile = _module(monkeypatch)

    @tf.function
    def step(x):
        with tf.name_scope("tower_1"), tf.name_scope("block_2"):
            for _ in range(3):
                x = tf.matmul(x, x) * 0.5  # a MatMul and a Mul per iteration
        return x

    x = tf.random.uniform((64, 64))
    step(x)  # traced outside the profile
    tf.profiler.experimental.start(str(tmp_path))
    for _ in range(4):
        step(x)
    tf.profiler.experimental.stop()
    milliseconds, counts = step_profile.op_times(str(tmp_path))
    assert counts["tower/block"] == 4 * 3 * 2
    assert milliseconds["tower/block"] > 0
