"""`benchmarks/ladder.py`: each rung adds one part, the kept rungs end at DFN's defaults, and it runs."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys

import pytest

from widedeep.models.dfn import DFN_DEFAULTS, build_dfn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def ladder(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    return importlib.import_module("ladder")


def test_each_rung_adds_one_part_and_the_kept_rungs_end_at_the_defaults(ladder):
    rows = {r["name"]: r for r in ladder.rungs()}
    base = rows["base"]["hp"]
    for name, values in ladder.PARTS:
        assert all(base[key] != value for key, value in values.items()), name
    below = base
    for name, values in ladder.PARTS:
        hp = rows[name]["hp"]
        changed = {key for key in hp if hp[key] != below.get(key)}
        assert changed == set(values), (name, changed)
        if rows[name]["kept"]:
            below = hp
    defaults = {
        **DFN_DEFAULTS,
        "dropout": inspect.signature(build_dfn).parameters["dropout"].default,
    }
    assert below == {key: defaults[key] for key in below}
    assert rows["wide_deep"]["model"] == "wide_deep" and rows["paper"]["hp"] == ladder.PAPER


def test_ladder_runs_on_a_tiny_world_and_tabulates(ladder, tmp_path, monkeypatch, capsys):
    rungs = ["base", "transformers"]
    argv = [
        "ladder.py",
        "--workdir", str(tmp_path),
        "--seeds", "0",
        "--epochs", "1",
        "--rungs", ",".join(rungs),
        "--sim", "num_impressions=600",
        "--sim", "num_users=40",
        "--sim", "num_items=30",
        "--sim", "users_per_round=20",
        "--sim", "max_length=3",
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    ladder.main()
    result = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in result["rungs"]] == rungs
    base, transformers = result["rungs"]
    assert not base["hp"]["use_click_transformer"] and transformers["hp"]["use_click_transformer"]
    for rung in result["rungs"]:
        (run,) = rung["per_seed"]
        for key in ("auc", "gauc", "logloss"):
            assert 0.0 < run[key] < 1.5 and rung[f"{key}_mean"] == run[key]
    path = tmp_path / "ladder-tiny.json"
    path.write_text(json.dumps(result))
    tables = importlib.import_module("tables")
    header, _, *lines = tables.ladder_table([str(path)]).splitlines()
    assert header == "| rung (adds one part) | tiny |"
    for line, rung in zip(lines, result["rungs"], strict=True):
        numbers = " / ".join(f"{rung[f'{key}_mean']:.4f}" for key in ("auc", "gauc", "logloss"))
        assert line == f"| {rung['name']} | {numbers} |"
