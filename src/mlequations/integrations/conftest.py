"""Doctest collection for the adapters (pytest runs ``--doctest-modules`` over ``src``).

Each adapter imports its framework at the top, so collecting one whose
framework is not installed would be an import error: those modules are left
out (their tests in ``backends_tests/test_integrations.py`` skip with the
reason). Keras picks its backend at import, and its default, TensorFlow, is
not a backend of this library: unless the environment names one, the
doctests run on JAX.
"""

import importlib.util
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

_FRAMEWORKS = {
    "torch.py": ("torch",),
    "transformers.py": ("torch", "transformers"),
    "flax.py": ("jax", "flax"),
    "keras.py": ("keras", os.environ["KERAS_BACKEND"]),
}
collect_ignore = [
    path
    for path, modules in _FRAMEWORKS.items()
    if any(importlib.util.find_spec(module) is None for module in modules)
]
