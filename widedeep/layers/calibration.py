"""A fixed offset added to the logit: the calibration correction of a weighted loss."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from scipy import optimize, special


@keras.saving.register_keras_serializable(package="widedeep")
class LogitOffset(keras.layers.Layer):
    """Adds one non-trainable scalar to the logit, `logit + offset`.

    A loss that weighs some impressions more than others (DFN's dislikes, for
    example) trains a model whose probabilities are biased towards the heavy
    impressions' labels. `widedeep.training.train` corrects the bias after
    training: it sets `offset` to the value that minimises the *unweighted* log
    loss on the validation rows (`fit_logit_offset`). The offset starts at 0 (no
    correction) and no optimizer ever touches it; it is saved with the model, so
    a served model is calibrated too.

    Call arguments:
        inputs: logits, any shape.

    Returns:
        `inputs + offset`, same shape.

    Example:

    ```python
    layer = LogitOffset()
    layer.build((None, 1))
    layer.offset.assign(-0.3)
    layer(np.zeros((2, 1)))   # [[-0.3], [-0.3]]
    ```
    """

    def build(self, input_shape: Any) -> None:
        self.offset = self.add_weight(name="offset", shape=(), initializer="zeros", trainable=False)

    def call(self, inputs: Any) -> Any:
        return inputs + keras.ops.cast(self.offset, inputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


def fit_logit_offset(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The scalar `b` that minimises the mean log loss of `sigmoid(logit(p) + b)` against `labels`.

    The log loss is convex in `b`, and its derivative `mean(sigmoid(logit(p) + b)) - mean(y)`
    increases monotonically: the optimum is that derivative's only root. It is bracketed by
    doubling an interval around 0 and found with Brent's method (`scipy.optimize.brentq`),
    which converges where a plain Newton step would not (saturated predictions have a
    vanishing second derivative). At the optimum the corrected probabilities' mean equals
    the click rate of `labels`.

    Args:
        probabilities: predicted probabilities in (0, 1); clipped to `[1e-7, 1 - 1e-7]`.
        labels: 0/1 labels, same length.

    Returns:
        The offset, a float (0.0 when `labels` are all equal: no finite optimum).

    Raises:
        ValueError: lengths differ, a probability is not finite, or a label is not 0 or 1.

    Example:

    >>> round(fit_logit_offset(np.array([0.5, 0.5, 0.5, 0.5]), np.array([1, 0, 0, 0])), 4)
    -1.0986
    """
    p = np.clip(np.asarray(probabilities, np.float64).reshape(-1), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"probabilities and labels differ in length: {p.shape[0]} vs {y.shape[0]}")
    if not np.isfinite(p).all():
        raise ValueError("probabilities must be finite; the model predicted NaN or infinity")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1. Received: {np.unique(y)[:10].tolist()}")
    if y.size == 0 or y.min() == y.max():
        return 0.0
    logit = special.logit(p)
    rate = y.mean()

    def derivative(b: float) -> float:
        return float(np.mean(special.expit(logit + b)) - rate)

    # Logits lie within +-16.2 (the clip) and logit(rate) within +-log(n): the root lies
    # within a few dozen of 0, found after a handful of doublings.
    width = 1.0
    while derivative(-width) > 0 or derivative(width) < 0:
        width *= 2
    return float(optimize.brentq(derivative, -width, width, xtol=1e-12, rtol=1e-15))
