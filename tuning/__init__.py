"""KerasTuner hypermodels of Wide & Deep and DFN, and the resumable search behind `widedeep tune`."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tuning.hypermodels import (  # noqa: E402
    TUNABLE_MODELS,
    CTRHyperModel,
    DFNHyperModel,
    TrialData,
    WideDeepHyperModel,
    get_hypermodel,
)
from tuning.search import TUNERS, make_tuner, run_search  # noqa: E402

__all__ = [
    "TUNABLE_MODELS",
    "TUNERS",
    "CTRHyperModel",
    "DFNHyperModel",
    "TrialData",
    "WideDeepHyperModel",
    "get_hypermodel",
    "make_tuner",
    "run_search",
]
