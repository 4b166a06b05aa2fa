"""The built-in decoders: ``greedy`` (bench's own, the default), ``beam`` and ``beam-lm``.

``beam`` and ``beam-lm`` use pyctcdecode (CTC prefix beam search over characters; with
``beam-lm``, word-level scoring by a KenLM n-gram model through the ``kenlm`` package) rather
than a beam search of bench's own. torchaudio's flashlight-based decoder would need torchaudio
in bench's environment, which the core keeps out of it (see docs/decoding.md). Install with
``pip install -e '.[decoding]' && pip install --no-deps pyctcdecode==0.5.0`` (pyctcdecode's last
release pins numpy < 2, which its code does not need and pandas 3 cannot live with).

``beam-lm``'s language model is built per cell from that cell's normalised training text only
(:func:`harness.decoding.ngram.build_ngram`, Kneser-Ney by default), written as an ARPA file
cached by content (the text, order and smoothing) under ``<cache_dir>/decoding/lm``; the LM weight
``alpha`` and word bonus ``beta`` are tuned on dev over their grids.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from harness.api import DecoderRequest, DecoderSpec
from harness.decoding.ngram import SMOOTHINGS, build_ngram
from harness.engine import Vocabulary, greedy_decode
from harness.errors import BenchError
from harness.hookspecs import hookimpl

INSTALL = "pip install -e '.[decoding]' && pip install --no-deps pyctcdecode==0.5.0"


def _greedy(request: DecoderRequest):
    vocab = Vocabulary(tuple(request.vocabulary))

    def decode(log_probs: Sequence[np.ndarray], weights: Mapping[str, float]) -> list[str]:
        return [greedy_decode(lp.argmax(-1).tolist(), vocab) for lp in log_probs]

    return decode


def _check_pyctcdecode() -> None:
    try:
        import pyctcdecode  # noqa: F401
    except ImportError:
        raise BenchError("decoder needs pyctcdecode, which is not installed", f"install it: {INSTALL}") from None


def _check_kenlm() -> None:
    _check_pyctcdecode()
    try:
        import kenlm  # noqa: F401
    except ImportError:
        raise BenchError("decoder beam-lm needs the kenlm package, which is not installed",
                         f"install it (it compiles, about 2 minutes): {INSTALL}") from None


def _labels(vocabulary: Sequence[str]) -> list[str]:
    """pyctcdecode's labels: "" for the blank (index 0), the symbols as they are."""
    return ["", *vocabulary[1:]]


def _beam_decode(decoder, options: Mapping):
    width = int(options["beam_width"])
    prune = float(options["beam_prune_logp"])
    token_min = float(options["token_min_logp"])

    def decode(log_probs: Sequence[np.ndarray], weights: Mapping[str, float]) -> list[str]:
        if weights:
            decoder.reset_params(**weights)
        return [" ".join(decoder.decode(lp.astype(np.float32), beam_width=width, beam_prune_logp=prune,
                                        token_min_logp=token_min).split()) for lp in log_probs]

    return decode


def _quiet():
    import logging

    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)


def _beam(request: DecoderRequest):
    _check_pyctcdecode()
    _quiet()
    from pyctcdecode import build_ctcdecoder

    return _beam_decode(build_ctcdecoder(_labels(request.vocabulary)), request.options)


def language_model(text: Sequence[str], order: int, smoothing: str, cache_dir: Path) -> Path:
    """The ARPA file of an n-gram model of ``text``, built once per content."""
    digest = hashlib.sha256(f"{order}\n{smoothing}\n".encode() + "\n".join(text).encode("utf-8")).hexdigest()
    path = cache_dir / "decoding" / "lm" / f"{digest}.arpa"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(build_ngram(text, order, smoothing).to_arpa(), encoding="utf-8")
        os.replace(tmp, path)
    return path


def _check_beam_options(options: Mapping) -> None:
    width = options["beam_width"]
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise BenchError(f"decoders.*.beam_width={width!r} is not a positive integer", "e.g. --set decoders.beam.beam_width=32")


def _check_lm_options(options: Mapping) -> None:
    _check_beam_options(options)
    order, smoothing = options["order"], options["smoothing"]
    if smoothing not in SMOOTHINGS:
        raise BenchError(f"decoders.beam-lm.smoothing={smoothing!r} is not known", f"use one of {', '.join(SMOOTHINGS)}")
    if not isinstance(order, int) or isinstance(order, bool) or not 2 <= order <= 6:
        raise BenchError(f"decoders.beam-lm.order={order!r} cannot be used: kenlm reads n-gram models of order 2 to 6",
                         "set --set decoders.beam-lm.order=3 (or 2..6)")


def _beam_lm(request: DecoderRequest):
    _check_kenlm()
    _quiet()
    options = request.options
    _check_lm_options(options)
    order, smoothing = options["order"], options["smoothing"]
    if not request.train_text:
        raise BenchError("beam-lm has no training text to build its language model from",
                         "the cell kept no training text: run it again with this bench version")
    from pyctcdecode import build_ctcdecoder

    arpa = language_model(list(request.train_text), int(order), smoothing, request.cache_dir)
    unigrams = sorted({w for line in request.train_text for w in line.split()})
    decoder = build_ctcdecoder(_labels(request.vocabulary), kenlm_model_path=str(arpa), unigrams=unigrams,
                               unk_score_offset=float(options["unk_score_offset"]))
    return _beam_decode(decoder, options)


BEAM_DEFAULTS = {"beam_width": 32, "beam_prune_logp": -10.0, "token_min_logp": -5.0}


@hookimpl
def bench_register_decoders(register) -> None:
    register(DecoderSpec(
        name="greedy", build=_greedy, version="1",
        description="best path: the most likely symbol per frame, repeats collapsed, blanks dropped (bench's "
                    "default; the hypotheses cells store)"))
    register(DecoderSpec(
        name="beam", build=_beam, version="1", defaults=dict(BEAM_DEFAULTS), check=_check_pyctcdecode,
        check_options=_check_beam_options,
        description="CTC prefix beam search without a language model (pyctcdecode)"))
    register(DecoderSpec(
        name="beam-lm", build=_beam_lm, version="1", check=_check_kenlm, check_options=_check_lm_options,
        defaults={**BEAM_DEFAULTS, "order": 3, "smoothing": "kneser-ney", "unk_score_offset": -10.0,
                  "alpha": [0.0, 0.25, 0.5, 1.0, 1.5, 2.0], "beta": [0.0, 0.5, 1.0, 2.0, 3.0]},
        tuned=("alpha", "beta"), tune_metric="wer",
        description="CTC beam search with a word n-gram LM of the cell's own training text (pyctcdecode + kenlm); "
                    "LM weight alpha and word bonus beta tuned on dev"))
