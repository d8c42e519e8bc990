"""`benchmarks/throughput.py`: the bound the floors put on the user's path, computed by hand."""

from __future__ import annotations

import importlib
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def throughput(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    return importlib.import_module("throughput")


def test_bound_is_the_pipeline_alone_and_the_cores_busy_with_pipeline_plus_mlp(
    throughput, monkeypatch
):
    monkeypatch.setattr(throughput.os, "sched_getaffinity", lambda pid: {0, 1})
    result = {
        "user_pipeline": {"median": 270_000, "cpu_ms_per_batch": 4.0},
        "mlp_floor": {"median": 190_000, "cpu_ms_per_batch": 8.5},
        "mlp_pipeline": {"median": 600_000, "cpu_ms_per_batch": 1.5},
        "tf_keras_legacy_peer": {"median": 100_000, "cpu_ms_per_batch": 13.0},
    }
    bound = throughput.user_path_bound(result)
    # 2 cores x 1024 rows / (4.0 ms of pipeline + (8.5 - 1.5) ms of MLP) = 186,182 rows/s.
    assert bound["cpu"] == 186_182
    assert bound["cpu_ms_per_batch"] == {"user_pipeline": 4.0, "mlp_alone": 7.0}
    assert bound["pipeline_alone"] == 270_000
    assert bound["vs_peer"] == {"pipeline_alone": 2.7, "cpu": 1.862}
    assert bound["cores"] == 2


def test_bound_without_the_peer_has_no_ratio(throughput, monkeypatch):
    monkeypatch.setattr(throughput.os, "sched_getaffinity", lambda pid: {0})
    result = {
        "user_pipeline": {"median": 1000, "cpu_ms_per_batch": 1.0},
        "mlp_floor": {"median": 500, "cpu_ms_per_batch": 2.0},
        "mlp_pipeline": {"median": 2000, "cpu_ms_per_batch": 1.0},
    }
    bound = throughput.user_path_bound(result)
    assert bound["cpu"] == 512_000  # 1 core x 1024 rows / 2 ms
    assert "vs_peer" not in bound
