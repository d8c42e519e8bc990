"""widedeep: Wide & Deep and the Deep Feedback Network for CTR prediction, in Keras 3.

`import widedeep` changes nothing outside the package: it sets no environment variable,
leaves file descriptor 2 alone and imports neither TensorFlow nor Keras (the `widedeep`
command quiets TensorFlow's logs itself, in `widedeep.cli`). The names below load on first
use (`widedeep.build_dfn`, `from widedeep import layers`). Keras finds widedeep's layers,
optimizers and model once `widedeep.models` is imported (a model name of this package does
that), so `keras.models.load_model` needs no `custom_objects`; `widedeep.models.load_model`
does both in one call.

widedeep runs on Keras' TensorFlow backend, Keras' default: importing it while the
environment variable `KERAS_BACKEND` names another backend raises `ImportError`.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from widedeep.errors import WidedeepError

if TYPE_CHECKING:
    from widedeep import layers, optimizers
    from widedeep.models.dfn import build_dfn
    from widedeep.models.two_optimizer_model import WideDeepModel
    from widedeep.models.wide_deep import build_wide_deep
    from widedeep.schema import (
        FEEDBACK_TYPES,
        CategoricalFeature,
        CrossFeature,
        NumericFeature,
        Schema,
        SchemaError,
        SequenceFeature,
    )

__all__ = [
    "FEEDBACK_TYPES",
    "CategoricalFeature",
    "CrossFeature",
    "NumericFeature",
    "Schema",
    "SchemaError",
    "SequenceFeature",
    "WideDeepModel",
    "WidedeepError",
    "build_dfn",
    "build_wide_deep",
    "layers",
    "optimizers",
]
__version__ = "0.1.0"

if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    # Keras reads KERAS_BACKEND once, when it is first imported: widedeep's layers and model
    # call TensorFlow directly, so they cannot run on another backend.
    raise ImportError(
        "widedeep needs Keras' TensorFlow backend, but the environment variable KERAS_BACKEND="
        f"{os.environ['KERAS_BACKEND']!r} selects another one: unset KERAS_BACKEND or set it "
        "to 'tensorflow'"
    )

_HOMES = {
    "FEEDBACK_TYPES": "widedeep.schema",
    "CategoricalFeature": "widedeep.schema",
    "CrossFeature": "widedeep.schema",
    "NumericFeature": "widedeep.schema",
    "Schema": "widedeep.schema",
    "SchemaError": "widedeep.schema",
    "SequenceFeature": "widedeep.schema",
    "WideDeepModel": "widedeep.models.two_optimizer_model",
    "build_dfn": "widedeep.models.dfn",
    "build_wide_deep": "widedeep.models.wide_deep",
}
"""Where each public name is defined; `layers` and `optimizers` are modules of their own."""
_MODULES = ("layers", "optimizers")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
