"""KerasTuner hypermodels of Wide & Deep and DFN, and the resumable search behind `widedeep tune`."""

from tuning.hypermodels import (
    TUNABLE_MODELS,
    CTRHyperModel,
    DFNHyperModel,
    TrialData,
    WideDeepHyperModel,
    get_hypermodel,
)
from tuning.search import TUNERS, make_tuner, run_search

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
