"""``python -m mlequations`` runs the command line."""

from .cli import main

# The guard matters: `check` starts worker processes with "spawn", which import
# the parent's __main__ module again (as __mp_main__) and must not rerun main().
if __name__ == "__main__":
    raise SystemExit(main())
