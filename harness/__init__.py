"""bench: how well do pre-trained speech models transfer to other languages?

The core (this package) knows no particular model, dataset or metric: those arrive as
plugins through the ``bench`` entry-point group (see :mod:`harness.hookspecs`).
"""

__version__ = "0.1.0"
