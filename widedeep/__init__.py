"""widedeep: Wide & Deep and the Deep Feedback Network for CTR prediction, in Keras 3."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from widedeep import layers, optimizers  # noqa: E402
from widedeep.models.base import WideDeepModel  # noqa: E402
from widedeep.models.dfn import build_dfn  # noqa: E402
from widedeep.models.wide_deep import build_wide_deep  # noqa: E402
from widedeep.schema import (  # noqa: E402
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
    "build_dfn",
    "build_wide_deep",
    "layers",
    "optimizers",
]
__version__ = "0.1.0"
