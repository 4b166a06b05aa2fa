"""Stored model outputs: per-utterance CTC log-probabilities and the training text, beside the store.

Files live in ``<store>.outputs/`` next to the SQLite store (``results.sqlite`` ->
``results.sqlite.outputs/``), named by the SHA-256 of their content (``ab/abcdef....ctc``): the
same outputs are kept once, a file is never changed after it is written, and a cell's record
names its files (:class:`harness.store.record.StoredFile`) with their size.

A ``.ctc`` file is one JSON line (format, utterance ids, frames per utterance, vocabulary size,
dtype) followed by the float16 log-probabilities of every utterance, row after row. A ``.txt``
file holds the normalised training transcripts of a cell, one per line: what its decoders'
language models are built from (never dev or test). A ``.gender`` file is one JSON object
(format, utterance ids, and each one's speaker gender, "" where not recorded) for an evaluated
split whose dataset records genders: the report's per-gender scores (every cell of a language
shares its test split's file).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import BenchError

FORMAT = "bench-ctc-logprobs/1"
GENDER_FORMAT = "bench-genders/1"


@dataclass(frozen=True)
class Blob:
    """A file to store: its content and the name it is stored under (the content's digest)."""

    sha256: str
    suffix: str
    content: bytes

    @property
    def name(self) -> str:
        return f"{self.sha256}{self.suffix}"


def _blob(content: bytes, suffix: str) -> Blob:
    return Blob(hashlib.sha256(content).hexdigest(), suffix, content)


def encode_log_probs(log_probs: Mapping[str, np.ndarray]) -> Blob:
    """One split's outputs (utterance id -> ``(frames, vocab)`` float16), in id order."""
    ids = sorted(log_probs)
    arrays = [np.ascontiguousarray(log_probs[i], dtype=np.float16) for i in ids]
    vocab = int(arrays[0].shape[1]) if arrays else 0
    header = {"format": FORMAT, "ids": ids, "frames": [int(a.shape[0]) for a in arrays], "vocab": vocab,
              "dtype": "float16"}
    body = b"".join(a.tobytes() for a in arrays)
    return _blob(json.dumps(header, separators=(",", ":")).encode() + b"\n" + body, ".ctc")


def decode_log_probs(content: bytes) -> dict[str, np.ndarray]:
    """utterance id -> ``(frames, vocab)`` float16 log-probabilities (views of ``content``)."""
    line, _, body = content.partition(b"\n")
    header = json.loads(line)
    if header.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    values = np.frombuffer(body, dtype=np.float16)
    out, start, vocab = {}, 0, header["vocab"]
    for utt, frames in zip(header["ids"], header["frames"]):
        out[utt] = values[start:start + frames * vocab].reshape(frames, vocab)
        start += frames * vocab
    return out


def encode_genders(genders: Mapping[str, str]) -> Blob:
    """One split's speaker genders (utterance id -> "female", "male", "other" or ""), in id order."""
    ids = sorted(genders)
    payload = {"format": GENDER_FORMAT, "ids": ids, "gender": [genders[i] for i in ids]}
    return _blob(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), ".gender")


def decode_genders(content: bytes) -> dict[str, str]:
    """utterance id -> gender ("" where not recorded)."""
    payload = json.loads(content.decode("utf-8"))
    if payload.get("format") != GENDER_FORMAT:
        raise ValueError(f"not a {GENDER_FORMAT} file")
    return dict(zip(payload["ids"], payload["gender"]))


def encode_text(lines: Sequence[str]) -> Blob:
    return _blob("".join(f"{' '.join(line.split())}\n" for line in lines).encode("utf-8"), ".txt")


class OutputStore:
    """The content-addressed folder of a results store's outputs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def beside(cls, store_path: str | Path) -> OutputStore:
        store_path = Path(store_path)
        return cls(store_path.with_name(store_path.name + ".outputs"))

    def path(self, sha256: str, suffix: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def put(self, blob: Blob) -> Path:
        """Write ``blob`` unless a file of that content is there already (atomically)."""
        path = self.path(blob.sha256, blob.suffix)
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob.content)
        os.replace(tmp, path)
        return path

    def read(self, sha256: str, suffix: str) -> bytes:
        path = self.path(sha256, suffix)
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise BenchError(f"stored outputs {path} are missing",
                             f"copy the folder {self.root} along with its results store (or run the cells "
                             "again)") from None
        if hashlib.sha256(content).hexdigest() != sha256:
            raise BenchError(f"stored outputs {path} do not match their digest (changed or damaged)",
                             f"delete {path} and run the cell again")
        return content

    def log_probs(self, sha256: str) -> dict[str, np.ndarray]:
        return decode_log_probs(self.read(sha256, ".ctc"))

    def text(self, sha256: str) -> list[str]:
        return self.read(sha256, ".txt").decode("utf-8").splitlines()

    def genders(self, sha256: str) -> dict[str, str]:
        return decode_genders(self.read(sha256, ".gender"))
