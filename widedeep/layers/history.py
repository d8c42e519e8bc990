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


@keras.saving.register_keras_serializable(package="widedeep")
class CandidateHistory(keras.layers.Layer):
    """How much of each feedback sequence shares a feature value with the candidate item.

    The counts of `HistoryStatistics` describe the user: they separate users (AUC)
    but say nothing about which of one user's candidates to rank first (GAUC).
    This layer describes the candidate *within* the user's history: for every
    sequence `s` and item feature `f` (e.g. the clicks and the category), the share
    of the sequence's valid items whose raw value of `f` equals the candidate's,
    `matches_sf / (n_s + 1)` (an empty sequence reads 0). Raw values are compared,
    not vocabulary indices, so two out-of-vocabulary values never match, and a
    candidate whose value is missing matches nothing.

    Args:
        missing_values: the missing value of each item feature, in input order.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a list `[target_ids, sequence_ids, sequence_masks]`: `target_ids`
            a list of `F` tensors `[B]` (the candidate's raw values, one per item
            feature); `sequence_ids` a list of `S` lists of `F` tensors `[B, L_s]`
            (the same features' raw values in each sequence); `sequence_masks` a
            list of `S` boolean masks `[B, L_s]`.

    Returns:
        `[B, S * F]` float32, sequence-major.

    Example:

    ```python
    target = [np.array([7])]                       # one feature, one row
    clicks = [[np.array([[7, 3, 7]])]]             # one sequence
    masks = [np.array([[True, True, False]])]
    CandidateHistory([-1])([target, clicks, masks])  # [[1 / 3]]: one match of two items
    ```
    """

    def __init__(self, missing_values: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.missing_values = list(missing_values)

    def call(self, inputs: list[Any]) -> Any:
        if len(inputs) != 3:
            raise ValueError(
                "CandidateHistory expects [target_ids, sequence_ids, sequence_masks]. "
                f"Received: {len(inputs)} inputs"
            )
        target_ids, sequence_ids, masks = inputs
        if len(target_ids) != len(self.missing_values):
            raise ValueError(
                f"CandidateHistory has {len(self.missing_values)} missing values for "
                f"{len(target_ids)} item features. Received: missing_values={self.missing_values}"
            )
        shares = []
        for ids, mask in zip(sequence_ids, masks, strict=True):
            valid = ops.cast(mask, "float32")
            count = ops.sum(valid, axis=1, keepdims=True)
            for target, items, missing in zip(target_ids, ids, self.missing_values, strict=True):
                target = ops.expand_dims(ops.convert_to_tensor(target), 1)
                same = ops.logical_and(ops.equal(items, target), ops.not_equal(target, missing))
                matches = ops.sum(ops.cast(same, "float32") * valid, axis=1, keepdims=True)
                shares.append(matches / (count + 1.0))
        return ops.concatenate(shares, axis=1)

    def compute_output_shape(self, input_shape: list[Any]) -> tuple:
        target_shapes, sequence_shapes, _ = input_shape
        return (target_shapes[0][0], len(sequence_shapes) * len(target_shapes))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "missing_values": self.missing_values}
