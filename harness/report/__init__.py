"""Reports: the model x language matrix, statistics, bootstrap intervals, pictures, the HTML
page, and ``bench compare``.

- :mod:`harness.report.tables`: matrices, rankings, CSV/JSON/Markdown/LaTeX, heatmaps;
- :mod:`harness.report.facts`: header, cost, outputs, loss curves, intervals;
- :mod:`harness.report.page`: the self-contained HTML page and its Markdown twin;
- :mod:`harness.report.stats`: the statistical findings (scipy, scikit-posthocs);
- :mod:`harness.report.bootstrap`: bootstrap intervals of corpus-level scores;
- :mod:`harness.report.compare`: a results file against a stored baseline.

The names of the former ``harness.report`` module are re-exported here.
"""

from harness.report.tables import (BLANK_MARK, EXHAUSTED_NOTE, Matrix, blank_findings, cell_values, cells_frame,
                                   data_frame, findings, heatmap, interval_rows, latex_table, layer_weights_figure,
                                   matrix, pretrained_models, pretraining_languages, protocols_of, rankings,
                                   summary_frame, write_reports)

__all__ = ["BLANK_MARK", "EXHAUSTED_NOTE", "Matrix", "blank_findings", "cell_values", "cells_frame", "data_frame",
           "findings", "heatmap", "interval_rows", "latex_table", "layer_weights_figure", "matrix",
           "pretrained_models", "pretraining_languages", "protocols_of", "rankings", "summary_frame",
           "write_reports"]
