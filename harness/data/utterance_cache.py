"""On-disk cache of decoded utterances, shared by dataset plugins.

One ``.npz`` file holds named groups of utterances (for example ``train``, ``dev``,
``test``): the audio of each group concatenated as int16 (16-bit is what the sources hold,
so nothing audible is lost), the lengths, and the ids, transcripts, speakers and (where
recorded) genders as JSON.
Writes are atomic, so a run killed mid-write never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from harness.api import Utterance


def save_utterances(path: Path, groups: Mapping[str, Sequence[Utterance]], extra: Mapping | None = None) -> None:
    """Write ``groups`` (and ``extra``, any JSON-able facts about them) to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    meta = {}
    for name, utts in groups.items():
        audio = np.concatenate([u.audio for u in utts]) if utts else np.zeros(0, np.float32)
        arrays[f"{name}_audio"] = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        arrays[f"{name}_lengths"] = np.array([len(u.audio) for u in utts], dtype=np.int64)
        # the gender only when recorded: files of datasets without one stay as they were
        meta[name] = [[u.id, u.text, u.speaker, u.gender] if u.gender else [u.id, u.text, u.speaker] for u in utts]
    arrays["meta"] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    arrays["extra"] = np.frombuffer(json.dumps(dict(extra or {}), ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_utterances(path: Path) -> tuple[dict[str, list[Utterance]], dict]:
    """Every group in ``path`` and the extra facts; raises ``ValueError`` (or an I/O error) when damaged."""
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode("utf-8"))
        extra = json.loads(bytes(data["extra"]).decode("utf-8")) if "extra" in data.files else {}
        out = {}
        for name, rows in meta.items():
            audio = data[f"{name}_audio"].astype(np.float32) / 32767
            lengths = data[f"{name}_lengths"]
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            if offsets[-1] != len(audio) or len(lengths) != len(rows):
                raise ValueError("inconsistent cache file")
            out[name] = [Utterance(row[0], audio[offsets[i]:offsets[i + 1]], row[1], row[2],
                                   row[3] if len(row) > 3 else "")
                         for i, row in enumerate(rows)]
    return out, extra


def load_or_none(path: Path, what: str) -> tuple[dict[str, list[Utterance]], dict] | None:
    """The cached groups and extra facts, or None when there is no cache or it is unreadable (said on stderr)."""
    if not path.exists():
        return None
    try:
        return load_utterances(path)
    except Exception as exc:  # corrupt or truncated: the caller makes it again
        print(f"warning: {what} cache {path} is unreadable ({exc}); making it again", file=sys.stderr)
        return None
