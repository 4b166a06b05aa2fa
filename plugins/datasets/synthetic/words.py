"""Word lists per language, from the frequency lists that wordfreq ships.

Words are filtered to the language's own script (no digits, no Latin loan spellings in
non-Latin scripts), and Japanese to kana: eSpeak NG reads kana but not kanji.
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np

#: Common Voice code -> (wordfreq code, accepted script prefixes of unicodedata names); the
#: eSpeak NG voice of each is in :data:`plugins.espeak.VOICES`
LANGUAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "en": ("en", ("LATIN",)),
    "de": ("de", ("LATIN",)),
    "nl": ("nl", ("LATIN",)),
    "sv-SE": ("sv", ("LATIN",)),
    "fr": ("fr", ("LATIN",)),
    "es": ("es", ("LATIN",)),
    "it": ("it", ("LATIN",)),
    "pt": ("pt", ("LATIN",)),
    "ru": ("ru", ("CYRILLIC",)),
    "uk": ("uk", ("CYRILLIC",)),
    "pl": ("pl", ("LATIN",)),
    "fa": ("fa", ("ARABIC",)),
    "ar": ("ar", ("ARABIC",)),
    "id": ("id", ("LATIN",)),
    "ja": ("ja", ("HIRAGANA", "KATAKANA")),
    "zh-CN": ("zh", ("CJK UNIFIED IDEOGRAPH",)),
}


def _in_script(word: str, scripts: tuple[str, ...]) -> bool:
    for ch in word:
        if ch in "'’-":
            continue
        category = unicodedata.category(ch)
        if category.startswith("M"):
            continue  # combining marks (Arabic harakat, ...)
        if not category.startswith("L"):
            return False
        if not unicodedata.name(ch, "").startswith(scripts):
            return False
    return True


@functools.cache
def vocabulary(code: str, size: int) -> tuple[tuple[str, ...], np.ndarray]:
    """The ``size`` most frequent words of ``code`` in its script, and sampling weights."""
    import wordfreq

    wf_code, scripts = LANGUAGES[code]
    table = wordfreq.get_frequency_dict(wf_code, wordlist="best")  # no tokeniser needed (ja, zh)
    ranked = sorted(table.items(), key=lambda item: (-item[1], item[0]))
    words: list[str] = []
    frequencies_list: list[float] = []
    for word, frequency in ranked:
        if _in_script(word, scripts) and not word.startswith(("'", "-")) and not word.endswith(("'", "-")):
            words.append(word)
            frequencies_list.append(frequency)
            if len(words) == size:
                break
    frequencies = np.array(frequencies_list, dtype=np.float64)
    # flatten Zipf's law so rarer words (and their characters) show up too
    weights = np.sqrt(frequencies + 1e-12)
    return tuple(words), weights / weights.sum()


def sentence(code: str, rng: np.random.Generator, size: int, min_words: int, max_words: int) -> str:
    words, weights = vocabulary(code, size)
    count = int(rng.integers(min_words, max_words + 1))
    chosen = rng.choice(len(words), size=count, p=weights)
    from harness.languages import language

    joiner = " " if language(code).spaced else ""
    return joiner.join(words[i] for i in chosen)
