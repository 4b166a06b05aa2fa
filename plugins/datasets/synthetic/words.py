"""Word lists per language, from the frequency lists that wordfreq ships.

Words are filtered to the language's own script (no digits, no Latin loan spellings in
non-Latin scripts), and Japanese to kana: eSpeak NG reads kana but not kanji.
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np

#: Common Voice code -> (wordfreq code, eSpeak NG voice, accepted script prefixes of unicodedata names)
LANGUAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "en": ("en", "en-us", ("LATIN",)),
    "de": ("de", "de", ("LATIN",)),
    "nl": ("nl", "nl", ("LATIN",)),
    "sv-SE": ("sv", "sv", ("LATIN",)),
    "fr": ("fr", "fr", ("LATIN",)),
    "es": ("es", "es", ("LATIN",)),
    "it": ("it", "it", ("LATIN",)),
    "pt": ("pt", "pt", ("LATIN",)),
    "ru": ("ru", "ru", ("CYRILLIC",)),
    "uk": ("uk", "uk", ("CYRILLIC",)),
    "pl": ("pl", "pl", ("LATIN",)),
    "fa": ("fa", "fa", ("ARABIC",)),
    "ar": ("ar", "ar", ("ARABIC",)),
    "id": ("id", "id", ("LATIN",)),
    "ja": ("ja", "ja", ("HIRAGANA", "KATAKANA")),
    "zh-CN": ("zh", "cmn", ("CJK UNIFIED IDEOGRAPH",)),
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

    wf_code, _, scripts = LANGUAGES[code]
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
