"""A word n-gram language model from a cell's training text, written as an ARPA file.

No PyPI package builds ARPA files (the ``kenlm`` package reads them but does not ship KenLM's
``lmplz`` builder), so bench counts n-grams here (``collections.Counter``) and writes the ARPA
text itself. Smoothing:

- ``kneser-ney`` (default): interpolated Kneser-Ney. The highest order uses raw counts, lower
  orders continuation counts (in how many distinct contexts a word sequence follows, except for
  sequences starting with ``<s>``, which have no left context), one absolute discount per order
  from the counts of counts, ``D = n1 / (n1 + 2 n2)`` (Ney, Essen and Kneser 1994);
- ``absolute``: the same interpolation with raw counts at every order (absolute discounting).

Interpolated models are written in ARPA's back-off form exactly: a seen n-gram's probability is
the interpolated one, and a context's back-off weight is the probability mass its discounts
freed, so that an unseen word's probability is that weight times its lower-order probability.
Unigrams are interpolated with the uniform distribution over the vocabulary plus ``<unk>``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from harness.errors import BenchError

SMOOTHINGS = ("kneser-ney", "absolute")
BOS, EOS, UNK = "<s>", "</s>", "<unk>"
#: log10 probability ARPA files give ``<s>`` (never predicted)
NEVER = -99.0


@dataclass(frozen=True)
class NgramModel:
    """Per order (1..N): n-gram tuple -> (log10 probability, log10 back-off weight or None)."""

    order: int
    smoothing: str
    grams: tuple[Mapping[tuple[str, ...], tuple[float, float | None]], ...]

    def log10_prob(self, word: str, context: Sequence[str]) -> float:
        """log10 p(word | context), by ARPA's back-off rule (for tests and checks)."""
        context = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
        backoff = 0.0
        while True:
            entry = self.grams[len(context)].get((*context, word))
            if entry is not None:
                return backoff + entry[0]
            if not context:
                return backoff + self.grams[0][(UNK,)][0]
            found = self.grams[len(context) - 1].get(context)
            if found is not None and found[1] is not None:
                backoff += found[1]
            context = context[1:]

    def to_arpa(self) -> str:
        lines = ["", "\\data\\"]
        lines += [f"ngram {n + 1}={len(table)}" for n, table in enumerate(self.grams)]
        for n, table in enumerate(self.grams):
            lines += ["", f"\\{n + 1}-grams:"]
            for gram in sorted(table):
                prob, backoff = table[gram]
                text = f"{prob:.6f}\t{' '.join(gram)}"
                if backoff is not None:
                    text += f"\t{backoff:.6f}"
                lines.append(text)
        lines += ["", "\\end\\", ""]
        return "\n".join(lines)


def _discount(counts: Iterable[int]) -> float:
    histogram = Counter(c for c in counts if c <= 2)
    n1, n2 = histogram.get(1, 0), histogram.get(2, 0)
    if n1 == 0 or n1 + 2 * n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9)


def build_ngram(sentences: Iterable[str], order: int = 3, smoothing: str = "kneser-ney") -> NgramModel:
    """An n-gram model of the words of ``sentences`` (already normalised; split on spaces)."""
    if smoothing not in SMOOTHINGS:
        raise BenchError(f"unknown language-model smoothing {smoothing!r}", f"choose one of {', '.join(SMOOTHINGS)}")
    if not isinstance(order, int) or order < 1:
        raise BenchError(f"language-model order {order!r} is not a positive integer", "use an order of 1 to 6")
    raw: list[Counter] = [Counter() for _ in range(order)]
    for sentence in sentences:
        words = [BOS, *sentence.split(), EOS]
        if len(words) == 2:
            continue
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                gram = tuple(words[i:i + n])
                if gram != (BOS,):
                    raw[n - 1][gram] += 1
    if not raw[0]:
        raise BenchError("the training text has no words to build a language model from",
                         "check the dataset's training transcripts")
    # the counts each order is estimated from
    counts: list[Counter] = []
    for n in range(order):
        if n == order - 1 or smoothing == "absolute":
            counts.append(raw[n])
            continue
        continuation: Counter = Counter()
        for gram in raw[n + 1]:
            continuation[gram[1:]] += 1
        for gram, c in raw[n].items():
            if gram[0] == BOS:  # nothing precedes <s>: its raw count stands
                continuation[gram] = c
        counts.append(continuation)
    discounts = [_discount(c.values()) for c in counts]
    vocabulary = {g[0] for g in raw[0]} | {UNK}
    probs: list[dict[tuple[str, ...], float]] = []
    backoffs: list[dict[tuple[str, ...], float]] = []
    for n in range(order):
        totals: dict[tuple[str, ...], int] = defaultdict(int)
        followers: dict[tuple[str, ...], int] = defaultdict(int)
        for gram, c in counts[n].items():
            totals[gram[:-1]] += c
            followers[gram[:-1]] += 1
        d = discounts[n]
        table: dict[tuple[str, ...], float] = {}
        gamma = {h: d * followers[h] / totals[h] for h in totals}
        for gram, c in counts[n].items():
            h = gram[:-1]
            lower = (1.0 / len(vocabulary)) if n == 0 else probs[n - 1][gram[1:]]
            table[gram] = max(c - d, 0.0) / totals[h] + gamma[h] * lower
        if n == 0:
            table[(UNK,)] = gamma[()] / len(vocabulary)
        probs.append(table)
        backoffs.append(gamma)
    grams = []
    for n in range(order):
        table = {}
        for gram, p in probs[n].items():
            weight = backoffs[n + 1].get(gram) if n + 1 < order else None
            table[gram] = (math.log10(p), math.log10(weight) if weight else (0.0 if n + 1 < order else None))
        if n == 0:
            table[(BOS,)] = (NEVER, math.log10(backoffs[1][(BOS,)]) if order > 1 and (BOS,) in backoffs[1] else
                             (0.0 if order > 1 else None))
        if n + 1 == order:
            table = {g: (p, None) for g, (p, _) in table.items()}
        grams.append(table)
    return NgramModel(order, smoothing, tuple(grams))
