"""The SUPERB / ML-SUPERB protocol, ``superb``: the upstream model frozen, a learnable
softmax-weighted sum of all its hidden layers, and a small downstream trained with CTC.

Nothing upstream trains, so every utterance's hidden states are computed once (the model in
eval mode, one utterance at a time) and reused by every update: an update costs only the
downstream. Two downstreams, sized by options:

- ``transformer`` (ML-SUPERB's): a linear projection of the weighted features to ``proj_dim``
  (80), a transformer encoder of ``layers`` (2) blocks of width ``width`` (256), a linear CTC
  output layer;
- ``lstm`` (SUPERB's ASR head): a linear projection to ``proj_dim``, a ``layers``-layer
  bidirectional LSTM of ``width`` units per direction (SUPERB: 2 x 1024), a linear CTC output.

Training uses the run's recipe (``[train]``: updates, tri-stage schedule, duration batching,
clipping; Adam at ``lr``, default the recipe's), the vocabulary rule and greedy decoding of
``finetune``. The learned layer weights are recorded with the cell (``train.layer_weights``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from harness.engine import loop
from harness.api import (CellOutcome, ModelFacts, ModelRequest, ProtocolRequest, ProtocolSpec,
                         SpeechCTCModel, frame_mask)
from harness.engine.batching import pad_stack
from harness.engine.device import autocast, resolve_device, resolve_precision, seed_everything
from harness.errors import BenchError
from harness.hookspecs import hookimpl

VERSION = "1"

DEFAULTS: dict[str, Any] = {
    "downstream": "transformer",
    "proj_dim": 80,
    "width": 256,
    "layers": 2,
    "heads": 4,
    "ff_dim": 1024,
    "dropout": 0.1,
    #: normalise each hidden state (no affine) before the weighted sum
    "layer_norm": False,
    #: Adam's peak learning rate; 0 takes train.lr (ML-SUPERB and SUPERB use 1e-4)
    "lr": 0.0,
}

#: hidden states are cached automatically when they fit in this many bytes
HIDDEN_CACHE_BUDGET = 4 * 2**30


def check(options: Mapping[str, Any]) -> None:
    def bad(key: str, text: str) -> BenchError:
        return BenchError(f"[protocols.superb] {key} {text}, got {options[key]!r}",
                          f"fix it in bench.toml or with --set protocols.superb.{key}=...")

    if options["downstream"] not in ("transformer", "lstm"):
        raise bad("downstream", 'must be "transformer" (ML-SUPERB) or "lstm" (SUPERB ASR)')
    for key in ("proj_dim", "width", "layers", "heads", "ff_dim"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(key, "must be a whole number >= 1")
    if options["width"] % options["heads"]:
        raise bad("width", f"must be a multiple of heads ({options['heads']})")
    for key, low, high in (("dropout", 0.0, 1.0), ("lr", 0.0, math.inf)):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
            raise bad(key, f"must be a number in [{low:g}, {high:g})")
    if not isinstance(options["layer_norm"], bool):
        raise bad("layer_norm", "must be true or false")


def accepts(facts: ModelFacts) -> str | None:
    if facts.hidden_states:
        return None
    return ("it does not provide hidden states (its ModelSpec does not declare ModelFacts(hidden_states=True) "
            "with SpeechCTCModel.hidden_states implemented)")


# --------------------------------------------------------------------------- downstream
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


# --------------------------------------------------------------------------- hidden states
class HiddenStates:
    """Every layer's output for each utterance of a split, from the frozen upstream: computed
    once and kept (``cached``) or computed again per batch, the same way either way (one
    utterance at a time, so a cached and an uncached run see the same numbers)."""

    def __init__(self, upstream: SpeechCTCModel, split, device, amp, cached: bool) -> None:
        self.upstream, self.split, self.device, self.amp, self.cached = upstream, split, device, amp, cached
        self.frames = upstream.frame_lengths(torch.tensor(split.samples, dtype=torch.long)).tolist()
        self._cache: list[torch.Tensor] | None = None

    def one(self, i: int) -> torch.Tensor:
        """``(frames, layers, dim)`` of utterance ``i``."""
        with torch.no_grad(), self.amp:
            features = self.upstream.encode(self.split.audio[i].to(self.device)[None])
            lengths = torch.tensor([self.frames[i]], device=self.device)
            states = self.upstream.hidden_states(features, frame_mask(lengths, features.shape[1]))
        if not states or len({tuple(s.shape) for s in states}) != 1:
            raise BenchError(f"{type(self.upstream).__qualname__}.hidden_states returned layers of different shapes "
                             f"({[tuple(s.shape) for s in states]})",
                             "hidden_states must return one (batch, frames, dim) tensor per layer, all alike")
        return torch.stack([s[0, : self.frames[i]] for s in states], dim=1).detach()

    def build_cache(self, progress=None) -> None:
        cache = []
        for i in range(len(self.split.audio)):
            cache.append(self.one(i))
            if progress:
                progress.advance()
        self._cache = cache

    def batch(self, indices: Sequence[int], grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([self.frames[i] for i in indices], dtype=torch.long, device=self.device)
        rows = [self._cache[i] for i in indices] if self._cache is not None else [self.one(i) for i in indices]
        return pad_stack(rows), lengths


def _use_cache(setting: str, probe: torch.Tensor, frames: Sequence[int]) -> bool:
    if setting in ("on", "off"):
        return setting == "on"
    per_frame = probe.element_size() * probe.shape[1] * probe.shape[2]
    return per_frame * sum(frames) <= HIDDEN_CACHE_BUDGET


# --------------------------------------------------------------------------- the protocol
def run(request: ProtocolRequest) -> CellOutcome:
    train, runtime, seed = request.train, request.runtime, request.seed
    device = resolve_device(runtime.device)
    precision = resolve_precision(runtime.precision, device)
    amp = autocast(device, precision)
    if runtime.threads > 0:
        torch.set_num_threads(runtime.threads)

    splits, vocab = loop.prepare_splits(request.data, request.language, train)
    train_split = splits["train"]
    seed_everything(seed)
    upstream = request.build_model(ModelRequest(
        vocab_size=len(vocab), blank_id=vocab.blank_id, seed=seed, mask_time_prob=0.0,
        options=dict(request.model_options), cache_dir=request.model_cache_dir,
    ))
    loop.encode_splits(splits, vocab, upstream.normalize_audio)
    upstream.to(device).eval()
    for p in upstream.parameters():
        p.requires_grad_(False)
    loop.check_frame_lengths(upstream, train_split, device, amp)

    features = HiddenStates(upstream, train_split, device, amp, cached=False)
    if loop.drop_unalignable(train_split, features.frames, request.language):
        features = HiddenStates(upstream, train_split, device, amp, cached=False)
    probe = features.one(0)
    cached = _use_cache(runtime.feature_cache, probe, features.frames)
    features.cached = cached
    layers, dim = probe.shape[1], probe.shape[2]

    seed_everything(seed)
    downstream = Downstream(layers, dim, len(vocab), request.options).to(device)
    info = loop.data_facts(device, precision, cached, vocab, splits)
    trainable = sum(p.numel() for p in downstream.parameters())
    info.update(upstream_layers=layers, upstream_dim=dim, trainable_parameters=trainable,
                parameters=trainable + sum(p.numel() for p in upstream.parameters()))
    if train.steps > 0:
        if cached:
            bar = request.progress.stage("encode", len(train_split.ids)) if request.progress else None
            start = time.perf_counter()
            features.build_cache(bar)
            info["encode_seconds"] = time.perf_counter() - start
        seed_everything(seed)
        recipe = train if not request.options["lr"] else _with_lr(train, request.options["lr"])
        saver = loop.Checkpointer(request.checkpoint, runtime.checkpoint_minutes) if request.checkpoint else None
        info.update(loop.fit(downstream, features, train_split, recipe, seed, device, precision, amp,
                             request.progress, saver))
    info["layer_weights"] = [round(float(w), 5) for w in downstream.layer_weights().detach().cpu()]

    results, info["eval_seconds"] = {}, {}
    downstream.eval()
    for name in ("dev", "test"):
        start = time.perf_counter()
        split = splits[name]
        results[name] = loop.evaluate(downstream, HiddenStates(upstream, split, device, amp, cached=False), split,
                                      vocab, runtime, amp)
        info["eval_seconds"][name] = time.perf_counter() - start
    skipped = {name: dict(split.skipped) for name, split in splits.items()}
    return CellOutcome(results, vocab.symbols, info, skipped)


def _with_lr(train, lr: float):
    import dataclasses

    return dataclasses.replace(train, lr=float(lr))


@hookimpl
def bench_register_protocols(register) -> None:
    register(ProtocolSpec(
        name="superb",
        run=run,
        version=VERSION,
        description="SUPERB / ML-SUPERB: frozen upstream, learnable weighted sum of its hidden layers, small "
                    "downstream (transformer or BiLSTM) trained with CTC",
        defaults=DEFAULTS,
        check=check,
        accepts=accepts,
    ))
