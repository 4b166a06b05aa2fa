"""Decoding clips (WAV, FLAC, MP3 and anything else libsndfile reads) to 16 kHz mono float32.

Shared by the dataset plugins (common_voice, fleurs, hf)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from harness.api import SAMPLING_RATE


class ClipSkipped(Exception):
    """A clip that cannot be used; ``reason`` is the name it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode(source: str | Path | bytes | tuple[np.ndarray, int]) -> np.ndarray:
    """Read a clip (a path, the file's bytes, or samples with their rate), mix to mono and
    resample to 16 kHz.

    Raises :class:`ClipSkipped` with reason ``missing_clip`` or ``undecodable_audio``.
    """
    if isinstance(source, tuple):  # samples already decoded (a dataset's array column)
        samples, rate = source
        try:
            data = np.asarray(samples, dtype=np.float32)
        except (TypeError, ValueError):
            raise ClipSkipped("undecodable_audio") from None
        if data.ndim == 1:
            data = data[:, None]
        elif data.ndim != 2:
            raise ClipSkipped("undecodable_audio")
        return _finish(data, int(rate))
    if isinstance(source, (str, Path)):
        if not os.path.isfile(source):
            raise ClipSkipped("missing_clip")
        handle = source
    else:
        if not source:
            raise ClipSkipped("undecodable_audio")
        handle = io.BytesIO(source)
    try:
        data, rate = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError, OSError):
        raise ClipSkipped("undecodable_audio") from None
    return _finish(data, rate)


def _finish(data: np.ndarray, rate: int) -> np.ndarray:
    """``(samples, channels)`` at ``rate`` -> 16 kHz mono float32, or :class:`ClipSkipped`."""
    if data.size == 0 or rate <= 0:
        raise ClipSkipped("undecodable_audio")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != SAMPLING_RATE:
        mono = soxr.resample(mono, rate, SAMPLING_RATE, quality="HQ")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if mono.size == 0 or not np.isfinite(mono).all():
        raise ClipSkipped("undecodable_audio")
    return mono
