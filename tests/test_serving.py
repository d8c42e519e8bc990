"""The exported SavedModel (TensorFlow alone), request checks and batch scoring."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import SEQUENCE_LENGTH, make_batch, make_tiny_schema
from widedeep.cli import main
from widedeep.data.pipeline import make_dataset
from widedeep.data.reader import read_columns
from widedeep.data.simulator import SimulatorConfig, simulate_dataset
from widedeep.export import (
    RequestError,
    check_request,
    serving_input_spec,
)
from widedeep.training import build_model, compile_model

SEQUENCES = ("click", "unclick", "dislike")


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Random float weights everywhere (the wide table starts at zero, which would hide it)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "float" in str(v.dtype):
            v.assign(rng.normal(0.0, 0.3, v.shape).astype("float32"))
    return model


def serving_batch() -> dict[str, np.ndarray]:
    """`make_batch` rows with unknown ids and cities, a missing city and an empty history."""
    x, _ = make_batch(12, seed=1)
    x["user_id"][:3] = [10, 11, 3]  # 10 and 11 are unknown
    x["item_id"][:2] = [21, 5]  # 21 is unknown
    x["city"][:3] = ["oslo", "", "rome"]  # unknown, missing, known
    for seq in SEQUENCES:
        x[f"{seq}_item_id"][0] = -1  # row 0: no feedback at all
        x[f"{seq}_category"][0] = -1
    x["city"] = x["city"].astype(str)
    return x


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny DFN with random weights, saved as .keras and exported by the CLI."""
    root = tmp_path_factory.mktemp("export")
    model = randomize(compile_model(build_model(make_tiny_schema(), "dfn", hidden_units=[8])))
    model.save(root / "model.keras")
    assert main(["export", "--model", str(root / "model.keras"), "--out", str(root / "sm")]) == 0
    return model, root


_TF_ONLY_CLIENT = textwrap.dedent(
    """
    import sys
    sys.modules["widedeep"] = None  # the package must not be needed
    try:
        import widedeep
    except ImportError:
        pass
    else:
        raise SystemExit("widedeep is importable")
    import numpy as np
    import tensorflow as tf

    saved_model, inputs, out = sys.argv[1:]
    loaded = tf.saved_model.load(saved_model)
    x = dict(np.load(inputs))
    serve = loaded.signatures["serving_default"]
    by_tensor = serve(**{k: tf.constant(v) for k, v in x.items()})["probability"].numpy()

    def example(row):
        feature = {}
        for name, values in x.items():
            value = values[row]
            if values.ndim == 2:  # a sequence: its items, without the padding
                items = [v for v in value.tolist() if v != -1]
                if items:
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=items))
            elif values.dtype.kind == "U":
                if value:  # a missing string is left out of the Example
                    feature[name] = tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[value.encode()])
                    )
            elif values.dtype.kind == "f":
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            else:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    examples = tf.constant([example(i) for i in range(len(by_tensor))])
    by_example = loaded.signatures["serve_examples"](examples=examples)["probability"].numpy()
    np.save(out, np.stack([by_tensor, by_example]))
    """
)


def test_saved_model_serves_with_tensorflow_alone(exported, tmp_path):
    """Both signatures reproduce `model.predict`; `saved_model_cli show` lists the raw inputs."""
    model, root = exported
    x = serving_batch()
    np.savez(tmp_path / "x.npz", **x)
    (tmp_path / "client.py").write_text(_TF_ONLY_CLIENT)
    saved_model = str(root / "sm")
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}
    # Two processes at once: each spends most of its time importing TensorFlow.
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorflow.python.tools.saved_model_cli",
            "show",
            "--dir",
            saved_model,
            "--all",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    client = subprocess.run(
        [sys.executable, "-I", "client.py", saved_model, "x.npz", "p.npy"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    shown, errors = cli.communicate(timeout=120)
    assert client.returncode == 0, client.stderr[-2000:]
    by_tensor, by_example = np.load(tmp_path / "p.npy")
    keras_x = {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in x.items()}
    expected = model.predict(keras_x, verbose=0)[:, 0]
    assert np.abs(by_tensor - expected).max() < 1e-6
    assert np.abs(by_example - expected).max() < 1e-6
    # The rows differ (the check is not vacuous): unknown ids and the empty history change the output.
    assert np.ptp(expected) > 1e-3

    assert cli.returncode == 0, errors[-2000:]
    signatures = {
        chunk.split("'")[0]: " ".join(chunk.split()) for chunk in shown.split("signature_def['")[1:]
    }
    assert {"serving_default", "serve_examples"} <= set(signatures)
    serving = signatures["serving_default"]
    for name, (shape, dtype) in make_tiny_schema().input_signature().items():
        dt = {"int64": "DT_INT64", "string": "DT_STRING", "float32": "DT_FLOAT"}[dtype]
        size = f"(-1, {shape[0]})" if shape else "(-1)"
        assert f"inputs['{name}'] tensor_info: dtype: {dt} shape: {size}" in serving
    assert "outputs['probability'] tensor_info: dtype: DT_FLOAT shape: (-1)" in serving
    examples = signatures["serve_examples"]
    assert "inputs['examples'] tensor_info: dtype: DT_STRING shape: (-1)" in examples


def test_request_checks_name_the_feature(exported):
    model, root = exported
    spec = serving_input_spec(model)
    x = serving_batch()
    assert check_request(x, spec) == 12
    missing = {k: v for k, v in x.items() if k != "city"}
    with pytest.raises(RequestError, match="missing feature 'city'"):
        check_request(missing, spec)
    with pytest.raises(RequestError, match="feature 'price' must be float32"):
        check_request({**x, "price": x["price"].astype("int64")}, spec)
    with pytest.raises(RequestError, match="feature 'price' must be float32 .* dtype float64"):
        check_request({**x, "price": x["price"].astype("float64")}, spec)
    with pytest.raises(RequestError, match="feature 'city' must be string"):
        check_request({**x, "city": np.arange(12)}, spec)
    short = x["click_item_id"][:, : SEQUENCE_LENGTH - 1]
    with pytest.raises(RequestError, match="'click_item_id' has the wrong sequence length"):
        check_request({**x, "click_item_id": short}, spec)
    with pytest.raises(RequestError, match="feature 'item_id' has 12 rows, 'user_id' has 3"):
        check_request({**x, "user_id": x["user_id"][:3]}, spec)
    # What the SavedModel itself says about a missing feature (TensorFlow's binding error).
    serve = tf.saved_model.load(str(root / "sm")).signatures["serving_default"]
    with pytest.raises(TypeError, match="missing a required argument: 'city'"):
        serve(**{k: tf.constant(v) for k, v in missing.items()})


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A tiny simulated dataset, a W&D+Seq model on it, and its export."""
    root = tmp_path_factory.mktemp("predict")
    config = SimulatorConfig(
        seed=3, num_users=40, num_items=30, num_impressions=1200, users_per_round=10, max_length=4
    )
    simulate_dataset(str(root / "data"), config, num_shards={"train": 2, "test": 3})
    from widedeep.data.reader import load_dataset_dir

    schema, _ = load_dataset_dir(root / "data")
    model = randomize(compile_model(build_model(schema, "wide_deep_seq", hidden_units=[8])), 1)
    model.save(root / "model.keras")
    assert main(["export", "--model", str(root / "model.keras"), "--out", str(root / "sm")]) == 0
    return model, schema, root


def test_predict_writes_one_row_per_input_row_in_order(scored, capsys):
    model, schema, root = scored
    data = root / "data"
    expected = model.predict(
        make_dataset(data, "test", batch_size=97).map(lambda x, y, w: x), verbose=0
    )[:, 0]
    columns = read_columns(data, "test", ["user_id", "item_id"])
    for source in ("model.keras", "sm"):
        out = root / f"{source}.csv"
        argv = ["predict", "--model", str(root / source), "--data", str(data), "--out", str(out)]
        assert main([*argv, "--batch-size", "300"]) == 0
        summary = json.loads(capsys.readouterr().out)
        with open(out) as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["user_id", "item_id", "probability"]
        assert summary["rows"] == len(rows) - 1 == len(expected) == 240
        table = np.array(rows[1:], dtype=float)
        np.testing.assert_array_equal(table[:, 0], columns["user_id"])
        np.testing.assert_array_equal(table[:, 1], columns["item_id"])
        assert np.abs(table[:, 2] - expected).max() < 1e-6


def test_predict_errors_are_one_line(scored, tmp_path, capsys):
    _, _, root = scored
    argv = ["predict", "--model", str(root / "sm"), "--data", str(root / "data")]
    assert main([*argv, "--out", str(tmp_path / "p.txt")]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err
    assert main([*argv, "--split", "valid", "--out", str(tmp_path / "p.csv")]) == 2
    assert "no split 'valid'" in capsys.readouterr().err
    assert (
        main([*argv[:2], str(tmp_path / "none"), *argv[3:], "--out", str(tmp_path / "p.csv")]) == 2
    )
    assert "no such model" in capsys.readouterr().err


def test_predict_names_a_feature_the_data_lack(exported, scored, tmp_path, capsys):
    _, tiny = exported
    _, _, root = scored
    argv = ["predict", "--model", str(tiny / "sm"), "--data", str(root / "data")]
    assert main([*argv, "--out", str(tmp_path / "p.csv")]) == 2
    assert (
        "lacks the features ['category', 'city', 'click_category', 'dislike_category'"
        in capsys.readouterr().err
    )
