"""Decoding as a stage: stored CTC outputs decoded again by decoder plugins, without retraining.

- :mod:`harness.decoding.ngram`: a word n-gram language model from a cell's training text
  (Kneser-Ney by default), written as ARPA;
- :mod:`harness.decoding.tuning`: a decoder's weights (LM weight alpha, length bonus beta)
  chosen on dev over a grid;
- :mod:`harness.decoding.stage`: views of stored cells decoded by each requested decoder, for
  reports, statistics and comparisons.
"""
