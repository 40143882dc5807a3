"""Keras 3 on JAX (or torch): the layers train with Model.fit like the native ones."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported; "torch" works too

import keras
import numpy as np

from mlequations.integrations.keras import Conv2D, MultiHeadAttention

images = keras.Input((8, 8, 3))
x = Conv2D(8, 3, strides=2, padding="same", activation="relu")(images)  # (4, 4, 8)
x = keras.layers.Reshape((16, 8))(x)
x = MultiHeadAttention(num_heads=2, key_dim=8)(x, x, use_causal_mask=True)
model = keras.Model(images, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x)))

rng = np.random.default_rng(0)
data, target = rng.normal(size=(32, 8, 8, 3)), rng.normal(size=(32, 1))
model.compile(optimizer="adam", loss="mse")
history = model.fit(data, target, epochs=3, batch_size=8, verbose=0)
print("losses:", [round(loss, 4) for loss in history.history["loss"]])
