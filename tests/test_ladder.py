"""`benchmarks/ladder.py` runs end to end on a tiny simulated world and reports every rung."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ladder_runs_on_a_tiny_world(tmp_path):
    rungs = ["base", "transformers"]
    command = [
        sys.executable,
        os.path.join(ROOT, "benchmarks", "ladder.py"),
        "--workdir", str(tmp_path),
        "--seeds", "0",
        "--epochs", "1",
        "--rungs", ",".join(rungs),
        "--sim", "num_impressions=1200",
        "--sim", "num_users=60",
        "--sim", "num_items=40",
        "--sim", "users_per_round=20",
        "--sim", "max_length=4",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert [r["name"] for r in result["rungs"]] == rungs
    base, transformers = result["rungs"]
    assert not base["hp"]["use_click_transformer"] and transformers["hp"]["use_click_transformer"]
    for rung in result["rungs"]:
        (run,) = rung["per_seed"]
        for key in ("auc", "gauc", "logloss"):
            assert 0.0 < run[key] < 1.5 and rung[f"{key}_mean"] == run[key]
