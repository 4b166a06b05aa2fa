"""The phone distribution of each language of the synthetic dataset, from eSpeak NG's own IPA.

The synthetic speech is eSpeak NG reading sentences of words drawn from each language's
vocabulary (:mod:`.words`); the phones it speaks are its IPA for those words. This computes, per
language, the share of each phone in that speech: every word of the vocabulary transcribed once
(in a fresh process, as phonetic pre-training does), its phones counted with the word's sampling
weight; phones under MIN_SHARE and symbols that are no phones (tone numbers) are left out. The result is the table :mod:`harness.data.phones` reads for the report's phonological
distance (``harness/data/phones.json``); regenerate it when the vocabulary or eSpeak NG changes::

    python -m plugins.datasets.synthetic.phones harness/data/phones.json

A test checks that the committed table equals a fresh computation.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

from harness.data.phones import segment

#: the synthetic dataset's default vocabulary size (its ``vocabulary_size`` option)
VOCABULARY = 3000
#: phones below this share of a language's phones are left out (loan-word and rare phones)
MIN_SHARE = 1e-3


def distributions(languages: tuple[str, ...] | None = None, vocabulary_size: int = VOCABULARY) -> dict[str, dict[str, float]]:
    """language -> phone -> share of that language's phones (shares of at least MIN_SHARE, renormalised)."""
    from plugins.models.pretrained.phonetic import ipa_targets, transcribe

    from .words import LANGUAGES, vocabulary

    codes = tuple(languages or LANGUAGES)
    lists = {code: vocabulary(code, vocabulary_size) for code in codes}
    ipa = transcribe([(code, list(lists[code][0])) for code in codes])
    out: dict[str, dict[str, float]] = {}
    for code, transcriptions in zip(codes, ipa):
        counts: Counter[str] = Counter()
        for weight, raw in zip(lists[code][1], transcriptions):
            for phone in segment(ipa_targets(raw)):
                counts[phone] += float(weight)
        total = sum(counts.values())
        # tone numbers and eSpeak NG's other marks are no phones
        kept = {p: c / total for p, c in counts.items() if c / total >= MIN_SHARE and p[0].isalpha()}
        norm = sum(kept.values())
        out[code] = {p: round(c / norm, 6) for p, c in sorted(kept.items(), key=lambda item: (-item[1], item[0]))}
    return out


def table(vocabulary_size: int = VOCABULARY) -> dict[str, object]:
    from importlib.metadata import version  # espeakng-loader's version is the table's provenance

    return {"source": f"eSpeak NG IPA (espeakng-loader {version('espeakng-loader')}) of the synthetic dataset's "
                      f"{vocabulary_size}-word vocabularies, weighted as sentences draw them",
            "min_share": MIN_SHARE, "languages": distributions(vocabulary_size=vocabulary_size)}


def main(argv: list[str]) -> int:
    text = json.dumps(table(), ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if argv:
        with open(argv[0], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))



