"""`train --strategy multi_worker`: two workers on localhost end where one process with the same global batch ends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from widedeep.cli import main
from widedeep.distribute import get_strategy, is_chief

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--num-users", "30", "--num-items", "20", "--num-impressions", "900", "--max-length", "3"]
MODELS = {
    "wide_deep": {"hidden_units": [8], "embedding_dim": 4, "dropout": 0.0},
    "dfn": {"hidden_units": [8], "embedding_dim": 4, "model_dim": 8, "num_heads": 2},
}

# Trains each model with `train()` and saves its weights right after `fit` (before the chief's
# calibration), so that every worker's weights can be compared, not only the chief's model.keras.
_DRIVER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from widedeep.distribute import get_strategy
    strategy, data, out = sys.argv[2:5]
    get_strategy(strategy)
    import numpy as np
    from widedeep import checkpointing, training
    fit, captured = checkpointing.fit_resumable, {}
    def fit_and_capture(model, *args, **kwargs):
        fit(model, *args, **kwargs)
        captured["weights"] = model.get_weights()
    checkpointing.fit_resumable = fit_and_capture
    for name, hp in json.loads(sys.argv[5]).items():
        config = training.TrainConfig(
            data=data, out=f"{out}/{name}", model=name, epochs=2, batch_size=64, logdir=None,
            early_stopping=0, hyperparameters=hp, strategy=strategy, verbose=0, backup_every=4,
            validation_fraction=0.1125,
        )
        metrics = training.train(config)
        np.savez(f"{out}/{name}.npz", *captured["weights"])
        print(json.dumps({name: sorted(metrics)}))
    """
)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _driver(strategy: str, data: str, out: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _DRIVER, ROOT, strategy, data, out, json.dumps(MODELS)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _weights(path: str) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def test_two_workers_end_with_the_weights_of_one_process(tmp_path):
    data = str(tmp_path / "data")
    assert main(["simulate", "--out", data, "--seed", "4", *TINY]) == 0
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    outs = [str(tmp_path / f"worker{i}") for i in range(2)]
    procs = [
        _driver(
            "multi_worker",
            data,
            outs[i],
            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        )
        for i in range(2)
    ]
    single = _driver("default", data, str(tmp_path / "single"), {"TF_CONFIG": ""})
    for proc in [*procs, single]:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    for name in MODELS:
        chief, other = (_weights(f"{out}/{name}.npz") for out in outs)
        reference = _weights(str(tmp_path / "single" / f"{name}.npz"))
        assert len(chief) == len(reference) > 0
        for a, b, c in zip(chief, other, reference):
            np.testing.assert_array_equal(a, b)  # the all-reduce keeps the replicas identical
            # The same rows each step; only the order of the float sums differs.
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
        # Only the chief writes the run's files; the other worker's backup is gone.
        assert sorted(os.listdir(f"{outs[0]}/{name}")) == [
            "config.json",
            "metrics.json",
            "model.keras",
        ]
        assert os.listdir(f"{outs[1]}/{name}") == []  # not even an empty backup directory


def test_multi_worker_without_tf_config_is_one_line(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        get_strategy("multi_worker")


def test_a_single_process_is_the_chief():
    assert is_chief(get_strategy("default"))
