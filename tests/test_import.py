"""`import widedeep` changes nothing outside the package: no environment variable, no stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Run in a fresh interpreter: records os.environ and what file descriptor 2 is, runs IMPORTS,
# records them again, then writes a marker to file descriptor 2.
_PROBE = """
import json, os, sys
def state():
    st = os.fstat(2)
    return dict(os.environ), [st.st_ino, st.st_dev]
{setup}
env, fd = state()
{imports}
env_after, fd_after = state()
os.write(2, b"written to fd 2 after the import\\n")
print(json.dumps({{
    "changed": {{k: [env.get(k), env_after.get(k)] for k in set(env) | set(env_after)
                if env.get(k) != env_after.get(k)}},
    "fd": fd, "fd_after": fd_after,
    "tensorflow": "tensorflow" in sys.modules,
}}))
"""

# What TensorFlow, Keras and the other dependencies set in os.environ on their own import
# (TF2_BEHAVIOR, KMP_DUPLICATE_LIB_OK, ...) happens here, before the first record.
_DEPENDENCIES = """
import keras, keras_tuner, numpy, polars, scipy, tensorflow
from tensorboard.plugins.hparams import api
"""

# Every module of widedeep and tuning, and every public name of widedeep.
_EVERYTHING = """
import importlib, pkgutil
import tuning, widedeep
for package in (widedeep, tuning):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
for name in widedeep.__all__:
    getattr(widedeep, name)
"""


def _run(setup: str, imports: str, **env: str) -> tuple[dict, str]:
    # Without the variables the package once set, so that setting them again shows.
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "WIDEDEEP_DEBUG")
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(setup=setup, imports=imports)],
        capture_output=True,
        text=True,
        env={**base, "PYTHONPATH": os.getcwd(), **env},
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_import_widedeep_touches_neither_environment_nor_stderr():
    result, stderr = _run(setup="", imports="import widedeep")
    assert result["changed"] == {}
    assert result["fd_after"] == result["fd"]  # the same open file
    assert stderr == "written to fd 2 after the import\n"  # and it still reaches our stderr
    # Nothing heavy either: `python -m widedeep.cli` quiets TensorFlow before it is imported.
    assert result["tensorflow"] is False


def test_importing_all_of_widedeep_and_tuning_touches_neither():
    result, stderr = _run(setup=_DEPENDENCIES, imports=_EVERYTHING)
    assert result["tensorflow"] is True
    assert result["changed"] == {}
    assert result["fd_after"] == result["fd"]
    assert stderr.endswith("written to fd 2 after the import\n")


def test_another_keras_backend_is_refused_by_name():
    done = subprocess.run(
        [sys.executable, "-c", "import widedeep"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd(), "KERAS_BACKEND": "jax"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: widedeep needs Keras' TensorFlow backend")
    assert "KERAS_BACKEND='jax'" in last


def test_importing_widedeep_models_registers_every_custom_object():
    """What `keras.models.load_model` needs after `import widedeep.models` alone."""
    code = """
import importlib, json, pkgutil, sys
import keras
registered = lambda: sorted(k for k in keras.saving.get_custom_objects() if k.startswith("widedeep>"))
import widedeep.models
after_models = registered()
import widedeep
for module in pkgutil.walk_packages(widedeep.__path__, "widedeep."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
print(json.dumps([after_models, registered()]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        timeout=300,
        check=True,
    )
    after_models, after_all = json.loads(done.stdout.splitlines()[-1])
    assert after_models == after_all
    for name in ("WideDeepModel", "WideLinear", "FeedbackInteraction", "Ftrl", "Adagrad"):
        assert f"widedeep>{name}" in after_all
