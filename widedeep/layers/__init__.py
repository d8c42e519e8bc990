"""Keras layers of widedeep (all registered for `keras.models.load_model`)."""

from widedeep.layers.calibration import LogitOffset
from widedeep.layers.click_aware_attention import ClickAwareAttention
from widedeep.layers.dropout import Dropout
from widedeep.layers.embedding import Embedding
from widedeep.layers.feedback_interaction import FeedbackInteraction
from widedeep.layers.feedback_transformer import FeedbackTransformer
from widedeep.layers.fm import FactorizationMachine
from widedeep.layers.history import CandidateHistory, HistoryStatistics
from widedeep.layers.mlp import MLP
from widedeep.layers.pooling import MaskedMeanPooling
from widedeep.layers.preprocessing import HashedCross, Standardize
from widedeep.layers.take_most_recent import TakeMostRecent
from widedeep.layers.wide import WideLinear

__all__ = [
    "MLP",
    "ClickAwareAttention",
    "Dropout",
    "Embedding",
    "FactorizationMachine",
    "FeedbackInteraction",
    "FeedbackTransformer",
    "HashedCross",
    "CandidateHistory",
    "HistoryStatistics",
    "LogitOffset",
    "MaskedMeanPooling",
    "Standardize",
    "TakeMostRecent",
    "WideLinear",
]
