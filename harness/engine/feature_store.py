"""Frozen feature-encoder outputs shared between cells, on disk, addressed by content.

Cells of a study share much of their feature-encoder work: every seed of a pre-trained model
reads the same encoder on the same speech, and models made from one initialisation (the tiny
models pre-trained here keep the feature encoder they started with) share it across models.
The :class:`FeatureStore` keeps each split's encoder outputs once, under a key made of

- the bytes of the feature encoder's parameters (``SpeechCTCModel.feature_encoder_parameters``)
  and the model class,
- the bytes of the split's audio as the model reads it (after its normalisation),
- what decides the arithmetic: torch's version, device type, precision and CPU threads,

so a stored entry is exactly what the cell would compute (the same numbers, never a near copy).
Two processes wanting the same entry take turns (a file lock): the second loads what the first
wrote. The directory is bounded (``run.feature_store_gb``); the least recently used entries go
first. Entries are plain ``torch.save`` files and may be deleted at any time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

__all__ = ["FeatureStore", "tensor_digest"]

FORMAT = "1"


def tensor_digest(tensors: Sequence[torch.Tensor], *extra: str) -> str:
    """A hash of the tensors' shapes, dtypes and bytes (and ``extra`` strings)."""
    h = hashlib.blake2b(digest_size=16)
    for text in extra:
        h.update(text.encode())
        h.update(b"\0")
    for t in tensors:
        t = t.detach()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        if t.numel():
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


class FeatureStore:
    """A directory of ``KEY.pt`` files, each a split's features as one ``(frames, channels)``
    tensor with the frame count of every utterance."""

    def __init__(self, directory: Path, budget_bytes: float) -> None:
        self.directory = Path(directory)
        self.budget_bytes = float(budget_bytes)

    @staticmethod
    def key(encoder_digest: str, audio_digest: str, precision: str, device: torch.device) -> str:
        threads = torch.get_num_threads() if device.type == "cpu" else 0
        payload = "|".join([FORMAT, encoder_digest, audio_digest, precision, device.type, str(threads),
                            torch.__version__])
        return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lock: whoever computes an entry holds it, others wait and then load."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{key}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self, key: str, frames: Sequence[int]) -> list[torch.Tensor] | None:
        """The stored rows of ``key`` (views of one tensor), or None when absent or unreadable."""
        path = self._path(key)
        try:
            saved = torch.load(path, weights_only=True)
            rows = list(torch.split(saved["features"], list(saved["frames"])))
        except Exception:  # absent, half-written by a killed process, or another format: recompute
            return None
        if [len(r) for r in rows] != list(frames):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used
        return rows

    def save(self, key: str, rows: Sequence[torch.Tensor]) -> None:
        """Store ``rows`` (written whole or not at all), then keep the directory in its budget."""
        if not rows:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {"features": torch.cat([r.detach().cpu() for r in rows]), "frames": [len(r) for r in rows]}
        size = payload["features"].numel() * payload["features"].element_size()
        if size > self.budget_bytes:
            return
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(payload, tmp)
            os.replace(tmp, self._path(key))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self.trim()

    def trim(self) -> None:
        """Delete the least recently used entries beyond the budget."""
        entries = []
        for path in self.directory.glob("*.pt"):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.budget_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                path.with_suffix(".lock").unlink(missing_ok=True)
            total -= size
