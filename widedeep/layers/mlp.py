"""A stack of fully connected layers (the deep branch, the DIN attention scorer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from widedeep.layers.dropout import Dropout


@keras.saving.register_keras_serializable(package="widedeep")
class MLP(keras.layers.Layer):
    """A stack of `Dense -> [BatchNormalization] -> activation -> [Dropout]` blocks.

    Works on any input of shape `[..., D]` (e.g. `[B, D]` for the deep branch or
    `[B, L, 4d]` for the DIN attention scorer). With `output_units` set, a final
    `Dense(output_units, activation=output_activation)` projection follows the hidden
    blocks; it gets neither batch norm nor dropout.

    When batch norm is on, the hidden `Dense` layers drop their bias (the batch-norm shift
    plays that role).

    Args:
        hidden_units: widths of the hidden layers, e.g. `[32, 16]`. May be empty
            (then only the output projection, if any, is applied).
        activation: activation of the hidden layers (any `keras.activations` name).
        dropout: dropout rate after each hidden activation, in `[0, 1)`.
        use_batch_norm: insert `BatchNormalization` between each hidden `Dense` and its
            activation.
        output_units: width of a final projection; `None` for no projection (the output
            is then the last hidden layer).
        output_activation: activation of the final projection (`None` = linear).
        kernel_initializer: initializer of every `Dense` kernel.
        kernel_regularizer: regularizer of every `Dense` kernel.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor of shape `[..., D]`.
        training: Python bool, whether dropout and batch norm run in training mode.

    Returns:
        `[..., output_units]`, or `[..., hidden_units[-1]]` without a projection.

    Example:

    >>> import numpy as np
    >>> deep = MLP(hidden_units=[32, 16], dropout=0.1)
    >>> deep(np.zeros((4, 8))).shape
    TensorShape([4, 16])

    References:
        - Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016.
    """

    def __init__(
        self,
        hidden_units: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        use_batch_norm: bool = False,
        output_units: int | None = None,
        output_activation: str | None = None,
        kernel_initializer: str
        | dict[str, Any]
        | keras.initializers.Initializer = "glorot_uniform",
        kernel_regularizer: str | dict[str, Any] | keras.regularizers.Regularizer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(hidden_units, (str, bytes)) or not isinstance(hidden_units, Sequence):
            raise ValueError(
                f"`hidden_units` must be a list of positive ints. Received: hidden_units={hidden_units!r}"
            )
        hidden_units = list(hidden_units)
        if any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in hidden_units):
            raise ValueError(
                f"`hidden_units` must be a list of positive ints. Received: hidden_units={hidden_units!r}"
            )
        if output_units is not None and (
            isinstance(output_units, bool) or not isinstance(output_units, int) or output_units < 1
        ):
            raise ValueError(
                f"`output_units` must be None or a positive int. Received: output_units={output_units!r}"
            )
        if not hidden_units and output_units is None:
            raise ValueError(
                "MLP needs at least one layer: give `hidden_units` or `output_units`. "
                f"Received: hidden_units={hidden_units!r}, output_units={output_units!r}"
            )
        if (
            not isinstance(dropout, (int, float))
            or isinstance(dropout, bool)
            or not 0.0 <= dropout < 1.0
        ):
            raise ValueError(f"`dropout` must be a float in [0, 1). Received: dropout={dropout!r}")

        self.hidden_units = hidden_units
        self.activation = keras.activations.get(activation)
        self.dropout = float(dropout)
        self.use_batch_norm = bool(use_batch_norm)
        self.output_units = output_units
        self.output_activation = keras.activations.get(output_activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

        self.hidden_layers: list[keras.layers.Dense] = []
        self.batch_norms: list[keras.layers.BatchNormalization] = []
        self.dropouts: list[Dropout] = []
        for i, units in enumerate(hidden_units):
            self.hidden_layers.append(
                keras.layers.Dense(
                    units,
                    use_bias=not self.use_batch_norm,
                    kernel_initializer=self._fresh_initializer(),
                    kernel_regularizer=self.kernel_regularizer,
                    dtype=self.dtype_policy,
                    name=f"dense_{i}",
                )
            )
            if self.use_batch_norm:
                self.batch_norms.append(
                    keras.layers.BatchNormalization(dtype=self.dtype_policy, name=f"batch_norm_{i}")
                )
            if self.dropout > 0.0:
                self.dropouts.append(
                    Dropout(self.dropout, dtype=self.dtype_policy, name=f"dropout_{i}")
                )
        self.output_layer = (
            keras.layers.Dense(
                output_units,
                activation=self.output_activation,
                kernel_initializer=self._fresh_initializer(),
                kernel_regularizer=self.kernel_regularizer,
                dtype=self.dtype_policy,
                name="output",
            )
            if output_units is not None
            else None
        )

    def _fresh_initializer(self) -> keras.initializers.Initializer:
        # An unseeded Keras initializer instance returns the same values on every call, so
        # sharing one instance would start equally shaped layers from identical kernels.
        return keras.initializers.get(keras.initializers.serialize(self.kernel_initializer))

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if input_shape[-1] is None:
            raise ValueError(
                f"MLP needs a known last input dimension. Received: input_shape={tuple(input_shape)}"
            )
        shape = tuple(input_shape)
        for i, dense in enumerate(self.hidden_layers):
            dense.build(shape)
            shape = dense.compute_output_shape(shape)
            if self.use_batch_norm:
                self.batch_norms[i].build(shape)
        if self.output_layer is not None:
            self.output_layer.build(shape)
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not self.hidden_layers:
            return self.output_layer(inputs)
        return self.call_after_first_product(self.hidden_layers[0](inputs), training=training)

    def call_after_first_product(self, product: Any, training: bool | None = None) -> Any:
        """Runs the MLP from the output of its first hidden `Dense` (`x @ kernel + bias`) on.

        For callers that compute that product faster from its parts than from the
        concatenated input (`ClickAwareAttention` does): `call(x)` equals
        `call_after_first_product(mlp.hidden_layers[0](x))`. Needs a hidden layer.
        """
        if not self.hidden_layers:
            raise ValueError("call_after_first_product needs an MLP with hidden layers")
        x = product
        for i, dense in enumerate(self.hidden_layers):
            if i:
                x = dense(x)
            if self.use_batch_norm:
                x = self.batch_norms[i](x, training=training)
            x = self.activation(x)
            if self.dropout > 0.0:
                x = self.dropouts[i](x, training=training)
        if self.output_layer is not None:
            x = self.output_layer(x)
        return x

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        width = self.output_units if self.output_units is not None else self.hidden_units[-1]
        return (*tuple(input_shape)[:-1], width)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "hidden_units": list(self.hidden_units),
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "use_batch_norm": self.use_batch_norm,
                "output_units": self.output_units,
                "output_activation": keras.activations.serialize(self.output_activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config
