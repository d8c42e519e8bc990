"""The private KerasTuner API that `tuning` uses, and only that, in one place.

Everything else in `tuning` uses public KerasTuner APIs and public widedeep modules (the
private Keras APIs of `widedeep` itself are in `widedeep/_compat.py`). The item below says why
no public API serves and the versions it was checked against: KerasTuner 1.4.7 and 1.4.8,
the range pinned in `pyproject.toml`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["hparams_of_space"]


def hparams_of_space(space: Any, hparams_api: Any) -> list[Any]:
    """TensorBoard `HParam`s of a KerasTuner search space, with KerasTuner's own domains.

    KerasTuner logs each trial with the `HParam`s of its private
    `tuner_utils.convert_hyperparams_to_hparams`; the HParams dashboard's config must declare the
    same ones, and no public function builds them. Checked: KerasTuner 1.4.7 and 1.4.8.

    Args:
        space: the `keras_tuner.HyperParameters` of the search space.
        hparams_api: `tensorboard.plugins.hparams.api`.

    Returns:
        One `hparams_api.HParam` per hyperparameter.
    """
    from keras_tuner.src.engine import tuner_utils

    return list(tuner_utils.convert_hyperparams_to_hparams(space, hparams_api))
