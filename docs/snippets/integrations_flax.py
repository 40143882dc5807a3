"""Flax nnx with grouped-query heads: the same outputs as flax's own attention_fn."""

import jax
import jax.numpy as jnp
from flax import nnx

from mlequations.integrations.flax import attention_fn


def layer(**kwargs):
    return nnx.MultiHeadAttention(
        num_heads=8, num_kv_heads=2, in_features=64, decode=False, rngs=nnx.Rngs(0), **kwargs
    )


x = jax.random.normal(jax.random.key(1), (2, 10, 64))
mask = nnx.make_attention_mask(jnp.ones((2, 10)), jnp.arange(10) < 7)  # 3 padded keys

ours = jax.jit(lambda x: layer(attention_fn=attention_fn)(x, mask=mask))(x)
native = jax.jit(lambda x: layer()(x, mask=mask))(x)
print("max |mlequations - flax|:", float(jnp.abs(ours - native).max()))
assert jnp.allclose(ours, native, atol=1e-5)
