"""Adapters that drop the portable equations into existing models.

Each module imports its own framework, and nothing else in the library imports
them (like ``einops.layers.torch``):

* :mod:`mlequations.integrations.transformers`: ``register()`` makes
  ``attn_implementation="mlequations"`` available to Hugging Face models;
* :mod:`mlequations.integrations.flax`: ``attention_fn`` for
  ``linen.MultiHeadDotProductAttention`` and ``nnx.MultiHeadAttention``;
* :mod:`mlequations.integrations.torch`: ``scaled_dot_product_attention`` with
  torch's signature, the ``Conv2d`` module and ``convert_conv2d(model)``.
"""
