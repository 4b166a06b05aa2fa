"""Phone inventories per language and the distance between a pre-training mix and a target.

The table (``phones.json`` beside this module) gives, per language of the synthetic dataset, the
share of each phone in its speech as eSpeak NG speaks it (made by
:mod:`plugins.datasets.synthetic.phones`). A language's *inventory* is the set of phones in it.

:func:`uncovered_share` is the report's phonological distance: the share of the target's phone
tokens whose phone is in none of the pre-training languages' inventories — how much of what the
target says a model never heard as a phone in pre-training (0: every phone covered). It reads
inventories, not proportions, of the pre-training side: hearing a phone at all is what pre-training
gives. :func:`jaccard_distance` is the plain set distance between the inventories, shown beside it.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path

TABLE = Path(__file__).with_name("phones.json")
#: joins two symbols into one phone (t͡ʃ)
_TIE = "\u0361\u035c"


def segment(ipa: str) -> list[str]:
    """IPA text as phones: a base symbol with its combining diacritics, modifier letters (ː ʲ ʰ)
    and anything a tie bar joins to it; spaces separate words and are dropped."""
    phones: list[str] = []
    join = False
    for ch in ipa:
        if ch.isspace():
            join = False
            continue
        attach = ch in _TIE or unicodedata.combining(ch) or unicodedata.category(ch) == "Lm"
        if phones and (attach or join):
            phones[-1] += ch
            join = ch in _TIE
            continue
        phones.append(ch)
        join = False
    return phones


@functools.cache
def _table() -> dict[str, dict[str, float]]:
    return json.loads(TABLE.read_text(encoding="utf-8"))["languages"]


def source() -> str:
    return json.loads(TABLE.read_text(encoding="utf-8"))["source"]


def distribution(code: str) -> dict[str, float] | None:
    """phone -> share of ``code``'s phones; None for a language the table lacks."""
    return _table().get(code)


def known(codes: Iterable[str]) -> bool:
    return all(code in _table() for code in codes)


def uncovered_share(pretraining: Iterable[str], target: str,
                    table: Mapping[str, Mapping[str, float]] | None = None) -> float:
    """Share of ``target``'s phone tokens whose phone no pre-training language has."""
    table = table or _table()
    heard = {p for code in pretraining for p in table[code]}
    return float(sum(share for p, share in table[target].items() if p not in heard))


def jaccard_distance(pretraining: Iterable[str], target: str,
                     table: Mapping[str, Mapping[str, float]] | None = None) -> float:
    """1 - |A ∩ B| / |A ∪ B| of the pre-training languages' joint inventory and the target's."""
    table = table or _table()
    a = {p for code in pretraining for p in table[code]}
    b = set(table[target])
    return 1.0 - len(a & b) / len(a | b) if a | b else 0.0
