"""Transcript normalisation and the character vocabulary.

Normalisation depends on the script: Unicode NFKC, case folding only where the script has
case, punctuation removed (apostrophes and hyphens inside words kept), whitespace collapsed,
and for scripts written without spaces (ja, zh-CN, th) the spaces dropped altogether.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.errors import BenchError
from harness.languages import language

BLANK = "<blank>"
_INNER_MARKS = {"'", "’", "-"}
_JOINERS = {"\u200c", "\u200d"}


def normalize(text: str, lang: str) -> str:
    """A transcript as references and hypotheses are compared: NFKC, lower case where the script
    has case, punctuation of every script dropped (apostrophes and hyphens inside words kept),
    single spaces, and no spaces at all for scripts written without them (ja, zh-CN, th)."""
    info = language(lang)
    text = unicodedata.normalize("NFKC", text)
    if info.cased:
        text = text.lower()  # not casefold(): it would turn German ß into ss
    out: list[str] = []
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if ch in _INNER_MARKS:
            inside = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
            out.append("'" if inside and ch != "-" else ("-" if inside else " "))
        elif ch in _JOINERS:
            # zero-width (non-)joiners shape Persian and Indic words: kept inside a word, else dropped
            inside = 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha()
            if inside:
                out.append(ch)
        elif category[0] in "PSC" and category != "Mn":
            out.append(" ")  # punctuation, symbols, control and format characters
        elif ch.isspace():
            out.append(" ")
        else:
            out.append(ch)
    words = "".join(out).split()
    return "".join(words) if not info.spaced else " ".join(words)


@dataclass(frozen=True)
class Vocabulary:
    """Characters of the training text; index 0 is the CTC blank (and the padding index)."""

    symbols: tuple[str, ...]

    @property
    def blank_id(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.symbols)

    def index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols)}

    def encode(self, text: str) -> tuple[list[int], int]:
        """Label ids for ``text`` and how many characters were outside the vocabulary (dropped)."""
        table = self.index()
        ids = [table[ch] for ch in text if ch in table]
        return ids, len(text) - len(ids)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.symbols[i] for i in ids if i != self.blank_id)


def build_vocabulary(texts: Sequence[str], min_fraction: float = 1e-5) -> Vocabulary:
    """Characters that make up at least ``min_fraction`` of the (normalised) training text.

    The study's rule is 0.001 % (``1e-5``). Order is deterministic: by code point.
    """
    counts = Counter(ch for text in texts for ch in text)
    total = sum(counts.values())
    if total == 0:
        raise BenchError(
            "the training transcripts are empty after normalisation, so there is no vocabulary",
            "check the dataset's transcripts (and that the language code matches the text)",
        )
    kept = sorted(ch for ch, n in counts.items() if n / total >= min_fraction)
    return Vocabulary((BLANK, *kept))


def greedy_decode(best_ids: Sequence[int], vocab: Vocabulary) -> str:
    """Collapse repeats, drop blanks, and tidy spaces (CTC best path)."""
    collapsed: list[int] = []
    previous = -1
    for i in best_ids:
        if i != previous:
            collapsed.append(i)
        previous = i
    return " ".join(vocab.decode(collapsed).split())
