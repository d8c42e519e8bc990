"""A dataset directory is read once per process while its files stay the same."""

from __future__ import annotations

import json

from widedeep.cli import main
from widedeep.data import reader

TINY = ["--num-users", "30", "--num-items", "20", "--num-impressions", "300", "--max-length", "3"]


def test_load_dataset_dir_reads_once_and_sees_a_rewrite(tmp_path):
    data = tmp_path / "data"
    assert main(["simulate", "--out", str(data), "--seed", "2", *TINY, "--json"]) == 0
    reader._load_dataset_dir.cache_clear()
    schema, meta = reader.load_dataset_dir(data)
    meta["splits"]["train"]["examples"] = -1  # callers get copies
    schema.categorical.clear()
    again_schema, again = reader.load_dataset_dir(data)
    info = reader._load_dataset_dir.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert again["splits"]["train"]["examples"] > 0 and again_schema.categorical

    rewritten = dict(again, source="edited")  # a new meta.json (new size) is read again
    (data / "meta.json").write_text(json.dumps(rewritten))
    _, fresh = reader.load_dataset_dir(data)
    assert fresh["source"] == "edited"
    assert reader._load_dataset_dir.cache_info().misses == 2


def test_predict_split_keeps_labels_and_groups_with_their_rows(tmp_path):
    import numpy as np

    from widedeep.data.pipeline import make_dataset
    from widedeep.evaluation import predict_split
    from widedeep.models.wide_deep import build_wide_deep

    data = tmp_path / "data"
    assert main(["simulate", "--out", str(data), "--seed", "4", *TINY, "--json"]) == 0
    schema, _ = reader.load_dataset_dir(data)
    model = build_wide_deep(schema, hidden_units=[4])
    probabilities, labels, groups = predict_split(model, str(data), "train", rows=(7, 230))
    stored = reader.read_columns(data, "train", [schema.label, schema.group_key])
    np.testing.assert_array_equal(labels, stored[schema.label][7:230])
    np.testing.assert_array_equal(groups, stored[schema.group_key][7:230])
    features = make_dataset(data, "train", schema, batch_size=50, rows=(7, 230))
    expected = np.concatenate([model.predict_on_batch(x).reshape(-1) for x, _, _ in features])
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6)
    assert len(np.unique(probabilities)) > 10  # rows differ, so a shift would show
