"""GAUC with each user's history frozen: how well trained models order one request's candidates.

A feed scores the candidates of one request together, all with the same history. The
offline GAUC groups a user's test impressions over the whole test period instead, and
each row carries the history *before it*, which grows with the user's earlier test
clicks: a later impression reads more clicks than an earlier click did. A model that
reads the history then orders a user's impressions partly by time, against the labels
(`widedeep.baselines.history_statistics` explains the mechanism). This script scores
every test row of a user with the sequences of that user's *first* test row, as if all
of them were the candidates of one request, and reports both GAUCs.

    python benchmarks/frozen_history.py --data DIR RUN_DIR [RUN_DIR ...]

Each RUN_DIR is a `widedeep train --out` folder (its `model.keras`). Prints JSON: per
run, test AUC and GAUC as evaluated, and `gauc_frozen` / `auc_frozen`.
"""

from __future__ import annotations

import argparse
import json
import os

import keras
import numpy as np
import tensorflow as tf

from widedeep.data.reader import load_dataset_dir, read_columns
from widedeep.metrics import gauc
from widedeep.models.two_optimizer_model import WideDeepModel


def frozen_columns(columns: dict[str, np.ndarray], groups: np.ndarray, sequence_inputs: list[str]):
    """`columns` with every sequence input replaced by its value at the group's first row.

    "First" is in row order: the test split is read in time order.
    """
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    first_of_row = first[inverse.reshape(-1)]
    return {k: (v[first_of_row] if k in sequence_inputs else v) for k, v in columns.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the dataset directory the runs trained on")
    parser.add_argument("runs", nargs="+", help="widedeep train --out folders")
    args = parser.parse_args()
    schema, _ = load_dataset_dir(args.data)
    sequence_inputs = [name for s in schema.sequences for name in s.input_names]
    inputs = list(schema.input_signature())
    names = [*inputs, schema.label, schema.group_key]
    columns = read_columns(args.data, "test", names)
    labels = columns[schema.label].astype(np.float64)
    groups = columns[schema.group_key]
    features = {k: columns[k] for k in inputs}
    frozen = frozen_columns(features, groups, sequence_inputs)
    results = {}
    for run in args.runs:
        model: WideDeepModel = keras.models.load_model(os.path.join(run, "model.keras"))
        wanted = {i.name for i in model.inputs}
        scores = {}
        for key, inputs in (("", features), ("_frozen", frozen)):
            x = {
                k: tf.constant(v.astype(bytes)) if v.dtype == object else v
                for k, v in inputs.items()
                if k in wanted
            }
            p = model.predict(x, batch_size=4096, verbose=0).reshape(-1)
            scores[f"auc{key}"] = float(keras.metrics.AUC(num_thresholds=10_000)(labels, p))
            scores[f"gauc{key}"] = gauc(labels, p, groups)
        results[os.path.basename(os.path.normpath(run))] = scores
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
