"""Compact CTC outputs: per-utterance log-probabilities in float16 that decode exactly as the model did.

Rounding log-probabilities to float16 can make two nearly equal symbols of a frame equal, and
then the arg-max (greedy decoding) may pick another symbol than the float32 logits did.
:func:`compact_log_probs` rounds and then, on the (rare) frames where that happened, raises the
model's best symbol to one float16 step above the others, so it is the arg-max again. So greedy decoding of the stored outputs gives exactly the
hypotheses the cell stored, and beam decoders read values within a float16 step of the model's.
"""

from __future__ import annotations

import numpy as np
import torch

#: how the outputs are stored
DTYPE = np.float16


def compact_log_probs(logits: torch.Tensor, best: torch.Tensor | None = None) -> np.ndarray:
    """``(frames, vocab)`` logits of one utterance -> float16 log-probabilities whose arg-max per
    frame is ``best`` (default: the logits' own arg-max)."""
    logits = logits.detach().float()
    if best is None:
        best = logits.argmax(-1)
    out = torch.log_softmax(logits, dim=-1).cpu().numpy().astype(DTYPE)
    return keep_argmax(out, best.cpu().numpy())


def keep_argmax(values: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Nudge ``values`` (float16, ``(frames, vocab)``) in place so that ``values.argmax(-1) == best``."""
    if values.size == 0:
        return values
    for row in np.nonzero(values.argmax(-1) != best)[0]:
        others = np.delete(values[row], best[row]).max()
        values[row, best[row]] = np.nextafter(others, DTYPE(np.inf), dtype=DTYPE)
    return values
