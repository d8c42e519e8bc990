"""Second-order factorization machine over field embeddings."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="widedeep")
class FactorizationMachine(keras.layers.Layer):
    """Second-order factorization-machine interaction of field embeddings.

    For field embeddings `e_1..e_F` (all of width `k`) the pairwise interaction
    `sum_{i<j} <e_i, e_j>` equals `sum_k 0.5 * ((sum_f e_f)^2 - sum_f e_f^2)`, which costs
    `O(F k)` instead of `O(F^2 k)` (Rendle, 2010). By default the layer returns the
    un-reduced `k`-dimensional *bi-interaction* vector `0.5 * ((sum_f e_f)^2 - sum_f e_f^2)`
    (Neural FM; what the DFN code feeds to its output layer, so the model learns one weight
    per dimension on top). With `reduce_sum=True` it returns the classic scalar FM term.

    The layer has no weights: the first-order (linear) term and any projection of the
    vector to a logit belong to the model.

    Args:
        reduce_sum: if `True`, sum the bi-interaction vector over its `k` dimensions and
            return the scalar second-order FM term of shape `[B, 1]`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: field embeddings, shape `[B, F, k]`.

    Returns:
        `[B, k]` (default) or `[B, 1]` (`reduce_sum=True`).

    Example:

    >>> import numpy as np
    >>> fm = FactorizationMachine()
    >>> embeddings = np.array([[[1.0, 2.0], [3.0, 4.0]]])  # one row, two fields, k = 2
    >>> print(keras.ops.convert_to_numpy(fm(embeddings)))  # e1 * e2 element-wise
    [[3. 8.]]

    References:
        - Rendle, "Factorization Machines", ICDM 2010.
        - He & Chua, "Neural Factorization Machines for Sparse Predictive Analytics",
          SIGIR 2017 (the bi-interaction pooling).
        - Xie et al., "Deep Feedback Network for Recommendation", IJCAI 2020.
    """

    def __init__(self, reduce_sum: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(reduce_sum, bool):
            raise ValueError(f"`reduce_sum` must be a bool. Received: reduce_sum={reduce_sum!r}")
        self.reduce_sum = reduce_sum

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) != 3:
            raise ValueError(
                "FactorizationMachine expects field embeddings of shape [batch, fields, k]. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        square_of_sum = ops.square(ops.sum(inputs, axis=1))
        sum_of_squares = ops.sum(ops.square(inputs), axis=1)
        interaction = 0.5 * (square_of_sum - sum_of_squares)
        if self.reduce_sum:
            return ops.sum(interaction, axis=-1, keepdims=True)
        return interaction

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], 1) if self.reduce_sum else (input_shape[0], input_shape[2])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"reduce_sum": self.reduce_sum})
        return config
