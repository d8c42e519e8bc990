"""`TakeMostRecent`: the most recent positions of a sequence."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="widedeep")
class TakeMostRecent(keras.layers.Layer):
    """Keeps the `length` most recent positions of a most-recent-first `[B, L, ...]` tensor.

    Feedback sequences hold the latest item at position 0, so the most recent items are
    the first positions: the output is `inputs[:, :length]`.

    Args:
        length: positions kept.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[B, L, ...]`, most recent item first.

    Returns:
        `inputs[:, :length]`.

    Example:

    >>> import numpy as np
    >>> TakeMostRecent(2)(np.array([[30, 20, 10]])).numpy().tolist()
    [[30, 20]]
    """

    def __init__(self, length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = length

    def call(self, inputs: Any) -> Any:
        return inputs[:, : self.length]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.length, *input_shape[2:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length}


# Models saved before the rename name the layer "widedeep>TakeFirst": they load as
# `TakeMostRecent` (and are saved under the new name from then on).
keras.saving.get_custom_objects()["widedeep>TakeFirst"] = TakeMostRecent
