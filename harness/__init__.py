"""bench: how well do pre-trained speech models transfer to other languages?

The core (this package) knows no particular model, dataset or metric: those arrive as
plugins through the ``bench`` entry-point group (see :mod:`harness.hookspecs`).

Layout (each subpackage one concern; imports point one way, cli -> run/report -> engine/plan
-> api):

- :mod:`harness.api`, :mod:`harness.hookspecs`, :mod:`harness.errors`: the plugin contract;
- :mod:`harness.plugins`, :mod:`harness.registers`: discovery, the register objects hooks get;
- :mod:`harness.plan`: bench.toml, presets and overrides into a typed config; cells, keys, cost;
- :mod:`harness.engine`: the fine-tune/eval loop every protocol composes (public);
- :mod:`harness.run`: the runner, one cell's work, executors, progress, provenance;
- :mod:`harness.store`: the SQLite results store and the typed cell record;
- :mod:`harness.report`: matrix, statistics, pictures, the HTML page, compare;
- :mod:`harness.data`: helpers dataset plugins share;
- :mod:`harness.cli`: one module per command.

Modules of the earlier flat layout (``harness.train``, ``harness.config``, ...) still import,
with a :class:`DeprecationWarning` naming their new place (see :mod:`harness._moved`).
"""

__version__ = "0.1.0"

from harness import _moved as _moved  # noqa: E402  (installs the finder for the old module names)

_moved.install()
