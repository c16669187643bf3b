"""``python -m scg``: the same as the ``scg`` command (:mod:`scg.algorithms.cli`)."""
import sys

from scg.algorithms.cli import main

if __name__ == "__main__":
    sys.exit(main())
