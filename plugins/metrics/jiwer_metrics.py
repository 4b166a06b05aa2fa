"""Corpus-level character and word error rates, computed with jiwer.

Corpus-level means total edits over total reference length (not a mean of per-utterance
rates), as is usual for ASR.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version

import jiwer

from harness.api import MetricSpec
from harness.hookspecs import hookimpl

_VERSION = f"1+jiwer{version('jiwer')}"


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    return float(jiwer.cer(list(references), list(hypotheses)))


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    return float(jiwer.wer(list(references), list(hypotheses)))


@hookimpl
def bench_register_metrics(register) -> None:
    register(MetricSpec("cer", cer, _VERSION, "character error rate (corpus-level, jiwer)"))
    register(MetricSpec("wer", wer, _VERSION, "word error rate (corpus-level, jiwer)"))
