"""widedeep: Wide & Deep and the Deep Feedback Network for CTR prediction, in Keras 3."""

import os

from widedeep._native_log import debug_enabled, filtered_native_stderr

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if not debug_enabled():
    # Level 3 keeps TensorFlow's C++ errors off the terminal too: a default `widedeep train`
    # printed "Tensor RefCount not reliable if buf_ points to a SubBuffer" 16 times per
    # evaluation pass at level 2 (TF 2.21). Real failures still raise Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
with filtered_native_stderr():
    # TensorFlow's import and its first look at the devices print native log lines
    # (oneDNN, CUDA on a machine without a GPU) that no setting silences.
    import tensorflow as _tf

    _tf.config.list_physical_devices("GPU")

from widedeep import layers, optimizers  # noqa: E402
from widedeep.models.dfn import build_dfn  # noqa: E402
from widedeep.models.two_optimizer_model import WideDeepModel  # noqa: E402
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
