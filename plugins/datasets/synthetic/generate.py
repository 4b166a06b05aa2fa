"""The synthesis itself, run in a fresh process per language (see ``_synthesise``).

Kept free of torch and of the core so the worker starts quickly. Returns plain tuples
``(id, audio, text, speaker)`` per split.
"""

from __future__ import annotations

import ctypes
import zlib
from typing import Any

import numpy as np

SAMPLING_RATE = 16_000
SPLITS = ("train", "dev", "test")

#: eSpeak NG voice variants used as "speakers". Variants with breath noise (f2, f3, f5,
#: whisper) are left out: their noise differs from run to run, even with the C RNG seeded.
VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f4", "klatt", "klatt2", "klatt3")


class SynthesisError(Exception):
    """A user-fixable problem met in the worker (message, hint); it crosses the process boundary."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message, hint)


def split_of(text: str) -> str:
    """Split by a hash of the sentence: the same sentence always lands in the same split."""
    bucket = zlib.crc32(text.encode("utf-8")) % 10
    return "train" if bucket < 8 else ("dev" if bucket == 8 else "test")


def synthesise(code: str, options: dict[str, Any]) -> dict[str, list[tuple[str, np.ndarray, str, str]]]:
    import soxr

    from plugins.espeak import VOICES, ESpeak

    from .words import sentence

    libc = ctypes.CDLL(None)  # eSpeak NG draws pitch flutter from the C library's rand()
    engine = ESpeak.get()
    voice = VOICES[code]
    rng = np.random.default_rng([int(options["corpus_seed"]), zlib.crc32(code.encode())])
    targets = {s: options[f"{s}_minutes"] * 60 * SAMPLING_RATE for s in SPLITS}
    totals = dict.fromkeys(SPLITS, 0)
    seen: set[str] = set()
    out: dict[str, list[tuple[str, np.ndarray, str, str]]] = {s: [] for s in SPLITS}
    attempts = 0
    while any(totals[s] < targets[s] for s in SPLITS):
        attempts += 1
        if attempts > 200_000:
            raise SynthesisError(f"could not make enough distinct sentences for {code!r}",
                                 "raise datasets.synthetic.vocabulary_size or lower the minutes")
        text = sentence(code, rng, int(options["vocabulary_size"]), int(options["min_words"]),
                        int(options["max_words"]))
        split = split_of(text)
        if text in seen or totals[split] >= targets[split]:
            continue
        seen.add(text)
        variant = VOICE_VARIANTS[int(rng.integers(len(VOICE_VARIANTS)))]
        rate = int(rng.integers(options["rate"][0], options["rate"][1] + 1))
        pitch = int(rng.integers(options["pitch"][0], options["pitch"][1] + 1))
        libc.srand(int(rng.integers(2**31)))
        raw = engine.synthesize(text, f"{voice}+{variant}", rate=rate, pitch=pitch)
        if len(raw) == 0:
            continue
        audio = soxr.resample(raw.astype(np.float32) / 32768.0, engine.sample_rate, SAMPLING_RATE)
        lead, tail = rng.integers(0, SAMPLING_RATE // 5, size=2)
        audio = np.concatenate([np.zeros(lead, np.float32), audio, np.zeros(tail, np.float32)])
        power = float(np.mean(audio**2)) + 1e-12
        snr = rng.uniform(*options["snr_db"])
        audio = audio + rng.normal(0.0, np.sqrt(power / 10 ** (snr / 10)), size=len(audio))
        peak = 0.9 * audio / max(float(np.abs(audio).max()), 1e-6)
        # 16-bit quantisation here, so the int16 cache holds exactly what a fresh synthesis gives
        audio = (np.round(peak * 32767) / 32767).astype(np.float32)
        out[split].append((f"{code}-{split}-{len(out[split]):05d}", audio, text, variant))
        totals[split] += len(audio)
    return out
