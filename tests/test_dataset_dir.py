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
