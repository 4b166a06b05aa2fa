"""Built-in dataset plugins, and what they share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from harness.api import Utterance


def rows_digest(utterances: Iterable[Utterance]) -> str:
    """SHA-256 of the rows a split uses (id and transcript, in order), for ``DatasetSplits.info``."""
    digest = hashlib.sha256()
    for utt in utterances:
        digest.update(f"{utt.id}\t{utt.text}\n".encode())
    return digest.hexdigest()
