"""Registry entries, one module per chapter: each defines ``EQUATIONS`` (see ``_registry``)."""
