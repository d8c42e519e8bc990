"""The two-optimizer model class and its builders; importing this registers every custom object.

Importing `widedeep.models` (or any module in it) imports `widedeep.layers` and the model
class, whose module imports `widedeep.optimizers`: every layer, optimizer and model of
widedeep is then registered with Keras, so `keras.models.load_model` needs no
`custom_objects`. `load_model` below does both in one call.
"""

from __future__ import annotations

import os

import keras

import widedeep.layers  # noqa: F401  (registers the layers)
from widedeep.errors import ModelFileError
from widedeep.models import two_optimizer_model  # noqa: F401  (registers the model and the optimizers)

__all__ = ["load_model"]


def load_model(path: str | os.PathLike) -> keras.Model:
    """`keras.models.load_model` for a `.keras` file written by widedeep (or any Keras model).

    Args:
        path: the `.keras` file.

    Returns:
        The model, compiled as it was saved.

    Raises:
        ModelFileError: if Keras cannot read `path` (for one, a file that is not a `.keras`
            archive); the message is Keras' own.
    """
    try:
        return keras.models.load_model(path)
    except ValueError as e:
        raise ModelFileError(str(e)) from e
