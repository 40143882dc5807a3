"""Keras 3: ``Conv2D`` and ``MultiHeadAttention`` layers backed by the portable equations.

Both subclass the Keras layers and override only the computation
(``convolution_op`` and ``_compute_attention``), so weights, configs,
serialization and ``Model.fit`` are Keras's own. They run on the backends
where :mod:`mlequations` understands the tensors Keras hands them: PyTorch,
JAX and NumPy (for inference).

A query row that may attend to no key gives zeros here; Keras gives the mean
of the values. Rows with at least one key agree.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

import mlequations as mle

__all__ = ["Conv2D", "MultiHeadAttention"]

_NCHW = (0, 3, 1, 2)
_NHWC = (0, 2, 3, 1)


class Conv2D(keras.layers.Conv2D):  # type: ignore[misc]
    """``keras.layers.Conv2D`` computed by :func:`mlequations.conv2d`.

    Same arguments and weights as the Keras layer; ``padding="same"`` follows
    Keras's rule, also with strides.

    Examples:
        >>> import numpy as np
        >>> from mlequations.integrations.keras import Conv2D
        >>> tuple(Conv2D(4, 3, padding="same")(np.ones((1, 5, 5, 2), dtype="float32")).shape)
        (1, 5, 5, 4)
    """

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        """Cross-correlate `inputs` with `kernel` (HWIO) in `data_format`."""
        x = ops.convert_to_tensor(inputs)
        if self.data_format == "channels_last":
            x = ops.transpose(x, _NCHW)  # (B, H, W, C) -> (B, C, H, W)
        w = ops.transpose(ops.convert_to_tensor(kernel), (3, 2, 0, 1))  # HWIO -> OIHW
        y = mle.conv2d(
            x,
            w,
            stride=tuple(self.strides),
            padding=self.padding,
            dilation=tuple(self.dilation_rate),
            groups=self.groups,
        )
        return ops.transpose(y, _NHWC) if self.data_format == "channels_last" else y


class MultiHeadAttention(keras.layers.MultiHeadAttention):  # type: ignore[misc]
    """``keras.layers.MultiHeadAttention`` computed by :func:`mlequations.attention`.

    Same arguments and weights as the Keras layer, for the default attention
    axes (inputs `(B, T, dim)`). Attention dropout in training draws the
    seed of its mask from the layer's seed generator (the `seed` argument makes
    it repeatable); ``return_attention_scores`` raises ``NotImplementedError``.

    Examples:
        >>> import numpy as np
        >>> from mlequations.integrations.keras import MultiHeadAttention
        >>> x = np.ones((1, 3, 8), dtype="float32")
        >>> tuple(MultiHeadAttention(num_heads=2, key_dim=4)(x, x, use_causal_mask=True).shape)
        (1, 3, 8)
    """

    def _compute_attention(
        self,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any = None,
        training: bool | None = None,
        return_attention_scores: bool = False,
        use_causal_mask: bool = False,
    ) -> tuple[Any, None]:
        if return_attention_scores:
            raise NotImplementedError(
                "`return_attention_scores`: mlequations.attention never forms the scores"
            )
        if len(query.shape) != 4:
            raise NotImplementedError(
                f"`attention_axes`={self._attention_axes}: only the default (one sequence axis)"
            )
        q, k, v = (
            ops.transpose(ops.convert_to_tensor(a), (0, 2, 1, 3)) for a in (query, key, value)
        )
        mask = None  # (B, T, S) -> (B, 1, T, S), boolean
        if attention_mask is not None:
            mask = ops.expand_dims(ops.cast(attention_mask, "bool"), axis=-3)
        p, seed = 0.0, None
        if training and self._dropout > 0.0:  # a fresh seed per call, from the layer's generator
            p = self._dropout
            seed = keras.random.randint(
                (), 0, 2**31 - 1, dtype="int32", seed=self._dropout_layer.seed_generator
            )
        out = mle.attention(
            q,
            k,
            v,
            mask=mask,
            is_causal=use_causal_mask,
            scale=self._inverse_sqrt_key_dim,
            dropout_p=p,
            dropout_seed=seed,
        )  # (B, N, T, Ev)
        return ops.transpose(out, (0, 2, 1, 3)), None  # (B, T, N, Ev)
