"""Counts of the user's recent feedback: what mean or target pooling over a sequence cannot see."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="widedeep")
class HistoryStatistics(keras.layers.Layer):
    """Per-row statistics of the click, unclick and dislike sequences' lengths.

    Pooling over a sequence (a masked mean, or a Transformer read out at the
    target) normalises away *how many* items it holds, yet how active a user has
    been and how often they clicked is among the strongest signals of a real log
    (logistic regression gains more from these four numbers than from any
    feature). With `n_c`, `n_u`, `n_d` the valid positions of the three masks:

    `[log1p(n_c), log1p(n_u), log1p(n_d), n_c / (n_c + n_u + n_d + 1)]`

    the last being the user's windowed click rate, shrunk towards 0 by one
    pseudo-impression so that an empty history reads as 0, not as 0 / 0.

    Call arguments:
        inputs: a list of three boolean masks `[B, L_s]`, in the order click,
            unclick, dislike (lengths may differ).

    Returns:
        `[B, 4]` float32.

    Example:

    ```python
    masks = [np.array([[True, True, False]]), np.array([[True, False]]), np.array([[False]])]
    HistoryStatistics()(masks)   # [[log(3), log(2), 0, 2 / 4]]
    ```
    """

    def call(self, inputs: list[Any]) -> Any:
        if len(inputs) != 3:
            raise ValueError(
                "HistoryStatistics expects the click, unclick and dislike masks. "
                f"Received: {len(inputs)} inputs"
            )
        counts = [ops.sum(ops.cast(m, "float32"), axis=1, keepdims=True) for m in inputs]
        clicks, unclicks, dislikes = counts
        rate = clicks / (clicks + unclicks + dislikes + 1.0)
        return ops.concatenate([ops.log1p(c) for c in counts] + [rate], axis=1)

    def compute_output_shape(self, input_shape: list[tuple]) -> tuple:
        return (input_shape[0][0], 4)
