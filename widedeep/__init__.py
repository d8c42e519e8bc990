"""widedeep: Wide & Deep and the Deep Feedback Network for CTR prediction, in Keras 3."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
]
__version__ = "0.1.0"
