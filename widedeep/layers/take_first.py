"""`TakeFirst`: the most recent positions of a sequence."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="widedeep")
class TakeFirst(keras.layers.Layer):
    """Keeps the first `length` positions of a `[B, L, ...]` tensor (the most recent items).

    Args:
        length: positions kept.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[B, L, ...]`, most recent item first.

    Returns:
        `inputs[:, :length]`.
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
