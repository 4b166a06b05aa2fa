"""Running a plan: the runner (:mod:`harness.run.runner`), one cell as a unit of work any
executor can compute (:mod:`harness.run.cell`), the executors (:mod:`harness.run.executors`),
models prepared before any cell (:mod:`harness.run.prepare_models`), progress and provenance."""
