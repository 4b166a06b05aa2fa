"""eSpeak NG through ctypes: speech and IPA phonemes for ~100 languages, fully offline.

Shared by the plugins that need it: the synthetic dataset speaks with it, and phonetic
pre-training takes its IPA transcriptions (grapheme-to-phoneme) as targets. The shared library
and its voice data come from the ``espeakng-loader`` wheel. The library keeps global state, so
one process-wide instance is used under a lock.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_RATE, _PITCH = 1, 3
_PHONEMES_IPA = 0x02

#: Common Voice code -> eSpeak NG voice, for the 18 study languages
VOICES: dict[str, str] = {
    "en": "en-us", "de": "de", "nl": "nl", "sv-SE": "sv", "fr": "fr", "es": "es", "it": "it", "pt": "pt",
    "ru": "ru", "uk": "uk", "pl": "pl", "fa": "fa", "et": "et", "ar": "ar", "id": "id", "ja": "ja", "th": "th",
    "zh-CN": "cmn",
}

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class ESpeakError(RuntimeError):
    pass


class ESpeak:
    _instance: "ESpeak | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise ESpeakError("eSpeak NG failed to initialise (espeakng-loader data missing?)")
        self.sample_rate = rate
        self._lib = lib
        self._chunks: list[np.ndarray] = []

        def collect(samples, count, events):  # called synchronously from espeak_Synth
            if count > 0:
                self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
            return 0

        self._callback = _SynthCallback(collect)  # keep a reference: ctypes must not free it
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "ESpeak":
        with cls._lock:
            if cls._instance is None:
                cls._instance = ESpeak()
            return cls._instance

    def _voice(self, voice: str) -> None:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ESpeakError(f"eSpeak NG has no voice {voice!r}")

    def synthesize(self, text: str, voice: str, rate: int = 175, pitch: int = 50) -> np.ndarray:
        """int16 samples at :attr:`sample_rate`."""
        with self._lock:
            self._voice(voice)
            self._lib.espeak_SetParameter(_RATE, int(rate), 0)
            self._lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            self._chunks = []
            data = text.encode("utf-8") + b"\0"
            error = self._lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            if error != 0:
                raise ESpeakError(f"eSpeak NG failed to synthesise {text!r} (error {error})")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def phonemes(self, text: str, voice: str) -> str:
        """IPA transcription of ``text`` (clauses joined by spaces)."""
        with self._lock:
            self._voice(voice)
            buffer = ctypes.create_string_buffer(text.encode("utf-8"))
            pointer = ctypes.c_void_p(ctypes.addressof(buffer))
            parts = []
            while pointer.value:
                out = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_IPA)
                if out:
                    parts.append(out.decode("utf-8", errors="replace").strip())
            return " ".join(p for p in parts if p)


def phonemize(texts: Sequence[str], language: str) -> list[str]:
    """eSpeak NG's IPA for each text as it reads it in ``language`` (a Common Voice code)."""
    voice = VOICES.get(language)
    if voice is None:
        raise ESpeakError(f"no eSpeak NG voice is set for language {language!r} (known: {', '.join(VOICES)})")
    engine = ESpeak.get()
    return [engine.phonemes(text, voice) for text in texts]
