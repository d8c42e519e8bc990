"""One home for every default: the model `widedeep train` trains is the one Python builds."""

from __future__ import annotations

import json

import keras
import pytest

import widedeep
from widedeep.cli import main
from widedeep.data.reader import load_dataset_dir

TINY = ["--num-users", "60", "--num-items", "40", "--num-impressions", "1500", "--max-length", "4"]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "data"
    assert main(["simulate", "--out", str(out), "--seed", "5", *TINY, "--json"]) == 0
    return out


def _without_names(config):
    """A layer config with every (auto-generated) `name` removed, recursively."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_without_names(v) for v in config]
    return config


def _architecture(model: keras.Model) -> list:
    return sorted(
        (
            (type(layer).__name__, json.dumps(_without_names(layer.get_config()), sort_keys=True))
            for layer in model.layers
        ),
    )


@pytest.mark.parametrize(
    "model, builder", [("wide_deep", widedeep.build_wide_deep), ("dfn", widedeep.build_dfn)]
)
def test_cli_default_model_equals_the_python_default(sim_dir, tmp_path, model, builder):
    run = tmp_path / "run"
    argv = ["train", "--data", str(sim_dir), "--model", model, "--out", str(run), "--logdir", ""]
    assert main([*argv, "--epochs", "1", "--json"]) == 0
    trained = keras.models.load_model(run / "model.keras")
    schema, _ = load_dataset_dir(sim_dir)
    built = builder(schema)
    built.compile()

    assert _architecture(trained) == _architecture(built)
    assert trained.count_params() == built.count_params()
    assert [v.shape for v in trained.weights] == [v.shape for v in built.weights]
    for trained_opt, built_opt in (
        (trained.wide_optimizer, built.wide_optimizer),
        (trained.deep_optimizer, built.deep_optimizer),
    ):
        assert type(trained_opt) is type(built_opt)
        trained_config = _without_names(trained_opt.get_config())
        built_config = _without_names(built_opt.get_config())
        assert trained_config == built_config
