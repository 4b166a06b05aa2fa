"""Keeping a manifest's audio paths inside their corpus.

A manifest (a tsv, csv, jsonl or a dataset's path column) is untrusted input: a row naming
``/etc/passwd``, ``../../other-corpus/x.wav`` or a symbolic link that leads out of the corpus
must not be read. Every dataset plugin that turns a manifest entry into a file path goes
through :func:`inside`; a row it refuses is skipped and counted under
:data:`PATH_OUTSIDE_CORPUS`. Nothing outside is opened: the check only resolves names.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the skip reason of a row whose audio path leaves its corpus
PATH_OUTSIDE_CORPUS = "path_outside_corpus"


def inside(root: str | os.PathLike, name: str, *, base: str | os.PathLike | None = None,
           absolute_ok: bool = False) -> Path | None:
    """The file ``name`` names, resolved, when it lies inside ``root``; else None.

    ``name`` is taken relative to ``base`` (default: ``root``). An absolute ``name`` is refused
    unless ``absolute_ok`` (some sources, such as a Hugging Face ``audiofolder``, record
    absolute paths; they must still lie inside ``root``). Symbolic links are followed before
    the comparison, so a link inside the corpus that points out of it is refused too. A name
    with a NUL byte or an empty name is refused.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    candidate = Path(name)
    if candidate.is_absolute():
        if not absolute_ok:
            return None
        target = candidate
    else:
        target = Path(base if base is not None else root) / candidate
    corpus = Path(root).resolve()
    resolved = target.resolve()  # follows every symlink on the way; does not need the file to exist
    return resolved if resolved == corpus or resolved.is_relative_to(corpus) else None
