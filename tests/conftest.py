"""Shared fixtures and helpers: a tiny schema, matching raw feature batches, optimizer slots."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from widedeep.data.simulator import SimulatorConfig  # noqa: E402
from widedeep.schema import (  # noqa: E402
    CategoricalFeature,
    CrossFeature,
    NumericFeature,
    Schema,
    SequenceFeature,
)

if TYPE_CHECKING:
    import keras

SEQUENCE_LENGTH = 5

TINY_WORLD = SimulatorConfig(
    seed=7,
    num_users=60,
    num_items=40,
    num_impressions=1500,
    users_per_round=20,
    num_regions=3,
    num_age_groups=2,
    num_categories=4,
    num_authors=8,
    latent_dim=4,
    max_length=5,
)
"""A simulated world small enough for a unit test (1,500 impressions of 60 users)."""


def make_tiny_schema(embedding_dim: int = 4) -> Schema:
    """Users, items, a string city, a hashed category, a bucketised price, a cross, three sequences."""
    return Schema(
        categorical=[
            CategoricalFeature("user_id", vocabulary=list(range(10)), embedding_dim=embedding_dim),
            CategoricalFeature("item_id", vocabulary=list(range(20)), embedding_dim=embedding_dim),
            CategoricalFeature(
                "city", dtype="string", vocabulary=["paris", "rome"], embedding_dim=embedding_dim
            ),
            CategoricalFeature("category", hash_buckets=7, embedding_dim=embedding_dim),
        ],
        numeric=[NumericFeature("price", mean=1.0, std=2.0, boundaries=[0.0, 1.0, 2.0], wide=True)],
        crosses=[CrossFeature("city_x_category", ["city", "category"], hash_buckets=16)],
        sequences=[
            SequenceFeature(name, ["item_id", "category"], SEQUENCE_LENGTH)
            for name in ("click", "unclick", "dislike")
        ],
        target_item_features=["item_id", "category"],
    )


def make_batch(n: int = 64, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw features (with some unknown ids and padding) and labels for `make_tiny_schema`."""
    rng = np.random.default_rng(seed)
    x: dict[str, np.ndarray] = {
        "user_id": rng.integers(0, 12, n),
        "item_id": rng.integers(0, 22, n),
        "city": rng.choice(np.array(["paris", "rome", "oslo", ""], dtype=object), n),
        "category": rng.integers(0, 5, n),
        "price": rng.normal(1.0, 2.0, n).astype("float32"),
    }
    for seq in ("click", "unclick", "dislike"):
        lengths = rng.integers(0, SEQUENCE_LENGTH + 1, n)
        valid = np.arange(SEQUENCE_LENGTH)[None, :] < lengths[:, None]
        x[f"{seq}_item_id"] = np.where(valid, rng.integers(0, 20, (n, SEQUENCE_LENGTH)), -1)
        x[f"{seq}_category"] = np.where(valid, rng.integers(0, 5, (n, SEQUENCE_LENGTH)), -1)
    logits = 0.8 * (x["category"] == 1) - 0.6 * (x["city"] == "rome") + 0.1 * x["price"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype("float32")
    return x, y


@pytest.fixture
def tiny_schema() -> Schema:
    return make_tiny_schema()


@pytest.fixture
def tiny_batch() -> tuple[dict[str, np.ndarray], np.ndarray]:
    return make_batch()


def start_widedeep(args: list[str]) -> subprocess.Popen:
    """`widedeep ARGS` in a process of its own (this checkout, TensorFlow quiet, output dropped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "widedeep.cli", *args],
        env={**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def optimizer_slots(
    optimizer: keras.optimizers.Optimizer, variables: list[keras.Variable]
) -> dict[str, dict[str, keras.Variable]]:
    """The slot variables of a built optimizer, `{variable path: {slot name: slot}}`.

    Reads the public `optimizer.variables`: Keras names the slot of a variable
    `<variable path, "/" as "_">_<slot name>` (e.g. `dense_kernel_accumulator`).
    Fails if the optimizer holds a slot for none of `variables`; a variable the
    optimizer has no slot for is absent from the result.
    """
    prefixes = {v.path.replace("/", "_") + "_": v.path for v in variables}
    assert len(prefixes) == len(variables), "two variables would share their slots' names"
    slots: dict[str, dict[str, keras.Variable]] = {}
    for slot in optimizer.variables:
        if slot.name in ("iteration", "learning_rate"):
            continue
        owners = [p for p in prefixes if slot.name.startswith(p)]
        assert owners, f"{optimizer.name} holds {slot.path}, a slot of none of the variables"
        prefix = max(owners, key=len)
        slots.setdefault(prefixes[prefix], {})[slot.name[len(prefix) :]] = slot
    return slots
