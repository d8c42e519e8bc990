"""`train --strategy multi_worker`: two workers on localhost end where one process with the same global batch ends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import tensorflow as tf

from widedeep.cli import main
from widedeep.distribute import get_strategy, is_chief, worker_id

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--num-users", "30", "--num-items", "20", "--num-impressions", "900", "--max-length", "3"]
MODELS = {
    "wide_deep": {"hidden_units": [8], "embedding_dim": 4, "dropout": 0.0},
    "dfn": {
        "hidden_units": [8],
        "embedding_dim": 4,
        "model_dim": 8,
        "num_heads": 2,
        "dropout": 0.0,
    },
}
"""Dropout off: two replicas draw other masks than one process, so the weights could not match."""

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


# A model with 1000-row tables (wide, one id per example in the user table, three in the item
# table) trained with `fit` on 72 rows in global batches of 16; saves its weights and what each
# optimizer exchanged. Rows 0-7 of each batch go to replica 0 (worker 0), rows 8-15 to replica 1.
_SPARSE_DRIVER = textwrap.dedent(
    """
    import dataclasses, json, sys
    sys.path.insert(0, sys.argv[1])
    from widedeep.distribute import get_strategy, shard_by_batch
    strategy, out = get_strategy(sys.argv[2]), sys.argv[3]
    import keras, numpy as np, tensorflow as tf
    from widedeep.layers.embedding import Embedding
    from widedeep.layers.wide import WideLinear
    from widedeep.models.two_optimizer_model import WideDeepModel
    data = {k: np.array(v, "int32") for k, v in json.loads(sys.argv[4]).items()}
    keras.utils.set_random_seed(0)
    with strategy.scope():
        user = keras.Input((), dtype="int32", name="user")
        items = keras.Input((3,), dtype="int32", name="items")
        deep = keras.layers.Concatenate()(
            [Embedding(1000, 4)(user), keras.layers.Flatten()(Embedding(1000, 4)(items))]
        )
        wide = WideLinear([1000, 1000], name="wide")([user, items[:, 0]])
        logit = keras.layers.Add()([wide, keras.layers.Dense(1)(deep)])
        model = WideDeepModel({"user": user, "items": items}, keras.layers.Activation("sigmoid")(logit))
        model.compile()
        model.global_batch_size = 16
    rows = tf.data.Dataset.from_tensor_slices(({"user": data["user"], "items": data["items"]}, data["label"]))
    model.fit(shard_by_batch(rows.batch(16)), epochs=2, verbose=0)
    np.savez(out + ".npz", *model.get_weights())
    sent = [model.wide_optimizer.exchanged or [], model.deep_optimizer.exchanged or []]
    with open(out + ".json", "w") as f:
        json.dump([[dataclasses.asdict(e) for e in group] for group in sent], f)
    """
)


def _touched_rows_data() -> dict[str, list]:
    """72 rows whose every global batch has ids both replicas touch and ids only one touches."""
    rng = np.random.default_rng(3)
    shared = rng.integers(0, 1000, 10)
    user, items = [], []
    for row in range(72):
        own = int(rng.integers(0, 1000))
        user.append(int(shared[row % 5]) if row % 2 else own)
        items.append([int(shared[5 + row % 5]), own, int(rng.integers(0, 1000))])
    label = rng.integers(0, 2, 72).tolist()
    return {"user": user, "items": items, "label": label}


def test_two_workers_exchange_only_touched_rows(tmp_path):
    data = _touched_rows_data()
    user, items = np.array(data["user"]), np.array(data["items"])
    for start in range(0, 72, 16):  # the replicas' halves of each batch (the last: 4 and 4)
        size = min(16, 72 - start) // 2
        a, b = ({*user[s : s + size], *items[s : s + size].ravel()} for s in (start, start + size))
        assert a & b and a - b and b - a
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}

    def driver(strategy: str, out: str, env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", _SPARSE_DRIVER, ROOT, strategy, out, json.dumps(data)],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    outs = [str(tmp_path / f"worker{i}") for i in range(2)]
    procs = [
        driver(
            "multi_worker",
            outs[i],
            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        )
        for i in range(2)
    ]
    procs.append(driver("default", str(tmp_path / "single"), {"TF_CONFIG": ""}))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    reference = _weights(str(tmp_path / "single.npz"))
    for out in outs:
        for a, b in zip(_weights(out + ".npz"), reference, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # What each worker sent per step: the tables as their rows in the batch (8 rows of 16 per
    # replica times the ids per example), never the tables.
    with open(outs[0] + ".json") as f:
        wide, deep = json.load(f)
    sparse = {
        (tuple(e["variable_shape"]), e["rows"], tuple(map(tuple, e["shapes"])))
        for e in wide + deep
        if e["rows"]
    }
    assert sparse == {
        ((2000, 1), 16, ((16,), (16, 1))),
        ((1000, 4), 8, ((8,), (8, 4))),
        ((1000, 4), 24, ((24,), (24, 4))),
    }
    dense = [tuple(e["variable_shape"]) for e in wide + deep if e["rows"] is None]
    assert sorted(dense) == [(1,), (1,), (16, 1)]


def test_multi_worker_without_tf_config_is_one_line(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        get_strategy("multi_worker")


def test_a_single_process_is_the_chief():
    for strategy in (get_strategy("default"), tf.distribute.OneDeviceStrategy("/cpu:0")):
        assert worker_id(strategy) == (None, 0)
        assert is_chief(strategy)


WORKERS = ["localhost:1001", "localhost:1002"]


@pytest.mark.parametrize(
    ("cluster", "task", "chief"),
    [
        ({"worker": WORKERS}, ("worker", 0), True),
        ({"worker": WORKERS}, ("worker", 1), False),
        ({"chief": ["localhost:1000"], "worker": WORKERS}, ("chief", 0), True),
        ({"chief": ["localhost:1000"], "worker": WORKERS}, ("worker", 0), False),
        ({"chief": ["localhost:1000"], "worker": WORKERS}, ("worker", 1), False),
        ({"worker": WORKERS, "evaluator": ["localhost:1003"]}, ("evaluator", 0), False),
    ],
)
def test_the_chief_is_the_chief_task_else_worker_0(monkeypatch, cluster, task, chief):
    # The resolver a MultiWorkerMirroredStrategy reads TF_CONFIG with, without its collectives.
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}})
    )
    strategy = types.SimpleNamespace(
        cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver()
    )
    assert worker_id(strategy) == task
    assert is_chief(strategy) is chief
