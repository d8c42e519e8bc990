"""`tf.distribute` for `widedeep train`: one strategy per process, the chief, and how data is split.

- `default`: one device (TensorFlow's default strategy).
- `mirrored`: `tf.distribute.MirroredStrategy` over this machine's GPUs (or its CPU).
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy` over the cluster that the
  `TF_CONFIG` environment variable describes, as TensorFlow documents it; start the same
  command on every worker.

Every worker keeps a full copy of the variables (embedding tables included) and
the gradients are summed across replicas each step (a table's as the rows the
batch touched: `widedeep.gradient_exchange`), so the global
batch (`--batch-size`) is split across all replicas and the weights stay
identical everywhere. Each worker reads every shard and keeps its part of each
global batch (`tf.data` auto-shard policy `DATA`): step `k` of a cluster trains on
the rows of step `k` of a single process. Only the chief writes the model,
`metrics.json`, `config.json`, TensorBoard logs and the backup.

Example:

```python
strategy = get_strategy("multi_worker")  # before any other TensorFlow op
with strategy.scope():
    model = compile_model(build_model(schema, "wide_deep"))
```
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from widedeep.errors import UsageError

__all__ = [
    "STRATEGIES",
    "get_strategy",
    "is_chief",
    "local_variable",
    "shard_by_batch",
    "worker_id",
]

STRATEGIES = ("default", "mirrored", "multi_worker")
"""Values of `widedeep train --strategy`."""

_created: dict[str, tf.distribute.Strategy] = {}


def get_strategy(name: str) -> tf.distribute.Strategy:
    """The process's strategy called `name` (one of `STRATEGIES`), created on the first call.

    `multi_worker` must be created before TensorFlow runs any op, so the CLI calls
    this first.

    Raises:
        ValueError: for an unknown name, or `multi_worker` without a usable `TF_CONFIG`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    if name not in _created:
        if name == "default":
            _created[name] = tf.distribute.get_strategy()
        elif name == "mirrored":
            _created[name] = tf.distribute.MirroredStrategy()
        else:
            _check_tf_config()
            _created[name] = tf.distribute.MultiWorkerMirroredStrategy()
    return _created[name]


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UsageError(
            "--strategy multi_worker needs the TF_CONFIG environment variable (the cluster and "
            "this worker's task; see docs/guides/distributed.md)"
        )
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(
            f"TF_CONFIG is not {{'cluster': {{'worker': [...]}}, 'task': {{'type': ..., "
            f"'index': ...}}}}: {e!r}"
        ) from None
    if not isinstance(workers, list) or not workers:
        raise UsageError(
            f"TF_CONFIG: cluster.worker must list host:port addresses. Received: {workers!r}"
        )


def worker_id(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """`(task type, task index)` of this process (`(None, 0)` outside a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: the `chief` task, else worker 0."""
    task_type, task_id = worker_id(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def shard_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Makes each worker keep its part of every global batch (auto-shard policy `DATA`).

    By-file sharding (`FILE`) would read less per worker but give each step other
    rows than a single process, and the time-ordered validation rows of the train
    split cut across files.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def local_variable(variable: tf.Variable) -> tf.Variable:
    """The copy of a (mirrored) variable that the current replica reads, itself elsewhere.

    A `tf.gather` on a `tf.distribute` mirrored variable reads the whole variable first
    (it has no `sparse_read`), then gathers: a copy of the table each step. On the
    replica's own copy, a plain resource variable, the gather reads the requested rows
    only, and the gradient still reaches the mirrored variable, whose `handle` in the
    replica context is that copy's.

    Args:
        variable: a `tf.Variable`, mirrored or not.

    Returns:
        In a replica context of a strategy with several local copies, the current
        replica's; otherwise the one local copy, or `variable` itself.
    """
    copies = tf.distribute.get_strategy().experimental_local_results(variable)
    context = tf.distribute.get_replica_context()
    if len(copies) == 1 or context is None:
        return copies[0]
    replica = tf.get_static_value(context.replica_id_in_sync_group)
    return copies[int(replica) % len(copies)]
