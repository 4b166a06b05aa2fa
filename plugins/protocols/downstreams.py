"""Downstream models trained on a frozen upstream's hidden states (the ``superb`` protocol's).

:class:`Downstream` is a learnable softmax-weighted sum of the upstream's layers followed by one
of two small CTC models, sized by the protocol's options:

- ``transformer`` (ML-SUPERB's): a linear projection of the weighted features to ``proj_dim``
  (80), a transformer encoder of ``layers`` (2) blocks of width ``width`` (256), a linear CTC
  output layer;
- ``lstm`` (SUPERB's ASR head): a linear projection to ``proj_dim``, a ``layers``-layer
  bidirectional LSTM of ``width`` units per direction (SUPERB: 2 x 1024), a linear CTC output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F


def _positions(frames: int, width: int) -> torch.Tensor:
    position = torch.arange(frames, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(frames, width)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: width // 2])
    return table


class Downstream(torch.nn.Module):
    """Weighted sum of the upstream's layers, then a small CTC model (what trains in ``superb``)."""

    def __init__(self, layers: int, dim: int, vocab_size: int, options: Mapping[str, Any]) -> None:
        super().__init__()
        self.layer_logits = torch.nn.Parameter(torch.zeros(layers))
        self.normalise = bool(options["layer_norm"])
        self.kind = options["downstream"]
        width = int(options["width"])
        self.proj = torch.nn.Linear(dim, int(options["proj_dim"]))
        if self.kind == "transformer":
            self.inp = torch.nn.Linear(int(options["proj_dim"]), width)
            block = torch.nn.TransformerEncoderLayer(width, int(options["heads"]), int(options["ff_dim"]),
                                                     float(options["dropout"]), batch_first=True, norm_first=True)
            self.encoder = torch.nn.TransformerEncoder(block, int(options["layers"]), enable_nested_tensor=False)
            self.norm = torch.nn.LayerNorm(width)
            out_dim = width
        else:
            self.rnn = torch.nn.LSTM(int(options["proj_dim"]), width, int(options["layers"]), batch_first=True,
                                     bidirectional=True, dropout=float(options["dropout"]) if options["layers"] > 1 else 0.0)
            out_dim = 2 * width
        self.dropout = torch.nn.Dropout(float(options["dropout"]))
        self.out = torch.nn.Linear(out_dim, vocab_size)

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits.float(), dim=0)

    def head(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``states`` ``(B, frames, layers, dim)`` -> CTC logits ``(B, frames, vocab)``."""
        if self.normalise:
            states = F.layer_norm(states, states.shape[-1:])
        weights = self.layer_weights().to(states.dtype)
        x = self.proj((states * weights[None, None, :, None]).sum(dim=2))
        if self.kind == "transformer":
            x = self.inp(x)
            x = x + _positions(x.shape[1], x.shape[2]).to(x.device, x.dtype)[None]
            x = self.norm(self.encoder(self.dropout(x), src_key_padding_mask=~mask))
        else:
            lengths = mask.sum(dim=1).cpu()
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            x, _ = self.rnn(packed)
            x, _ = torch.nn.utils.rnn.pad_packed_sequence(x, batch_first=True, total_length=mask.shape[1])
        return self.out(self.dropout(x))
