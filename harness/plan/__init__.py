"""Planning: bench.toml, presets and ``--set`` into a typed config (:mod:`harness.plan.config`),
the cells of a run and their keys (:mod:`harness.plan.cells`), every name and option resolved
before any work (:mod:`harness.plan.planner`), and what a plan costs (:mod:`harness.plan.cost`)."""
