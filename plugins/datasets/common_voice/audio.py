"""Decoding clips: moved to :mod:`plugins.datasets.audio`, shared by every dataset plugin."""

from plugins.datasets.audio import ClipSkipped, decode

__all__ = ["ClipSkipped", "decode"]
