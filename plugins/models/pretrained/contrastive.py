"""Self-supervised wav2vec 2.0 pre-training of the tiny wav2vec2 model.

The objective is the one ``Wav2Vec2ForPreTraining`` implements: spans of the transformer's
input are masked, and at each masked frame the model must pick the quantised encoder output
out of ``num_negatives`` distractors from the same utterance (contrastive loss), while a
diversity loss keeps the Gumbel-softmax codebooks in use. Masks and distractors are drawn as
in the Hugging Face pre-training example, with transformers' own helpers.

The whole model is trained, the convolutional feature encoder included. (Measured here: with
the encoder frozen at its random initialisation, which would make an update about three
times cheaper, the contrastive loss stayed at chance level, ln 51 = 3.93, for 600 updates;
trained, it leaves chance within 200.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.api import SAMPLING_RATE, PrepareContext, frame_mask
from harness.engine.batching import endless_batches, pad_stack
from harness.engine.device import seed_everything
from harness.errors import BenchError
from harness.engine.schedule import tri_stage_scheduler
from harness.engine import LOSS_WINDOW, UpdateLog, prepare_audio

from ..hf import tiny_config
from .checkpoints import Pretrained
from .corpus import load_corpus
from .recipe import ContrastiveRecipe

#: a loss history entry is kept every this many updates
HISTORY_EVERY = 25


@dataclass
class PretrainOutcome:
    model: torch.nn.Module
    #: every HISTORY_EVERY updates: update, loss, contrastive, diversity, perplexity (per masked frame)
    history: list[dict[str, float]] = field(default_factory=list)
    #: updates skipped because the loss was not finite
    skipped_updates: int = 0
    seconds: float = 0.0
    utterances: int = 0
    audio_seconds: float = 0.0


def pretraining_config(recipe: ContrastiveRecipe):
    """The tiny wav2vec2 configuration with the recipe's quantiser and masking."""
    return tiny_config(
        "wav2vec2",
        num_codevector_groups=recipe.codevector_groups,
        num_codevectors_per_group=recipe.codevectors_per_group,
        codevector_dim=recipe.codevector_dim,
        proj_codevector_dim=recipe.codevector_dim,
        num_negatives=recipe.num_negatives,
        diversity_loss_weight=recipe.diversity_weight,
        mask_time_prob=recipe.mask_prob,
        mask_time_length=recipe.mask_length,
        feat_quantizer_dropout=0.0,
    )


def _temperature(recipe: ContrastiveRecipe, update: int) -> float:
    start, end = recipe.gumbel_temperature
    progress = update / max(recipe.steps - 1, 1)
    return start * (end / start) ** progress


def pretrain(recipe: ContrastiveRecipe, audio: Sequence[np.ndarray], device: torch.device | str = "cpu",
             on_update: Callable[[int, dict[str, float]], None] | None = None) -> PretrainOutcome:
    """Pre-train a fresh tiny wav2vec2 on ``audio`` (16 kHz float32 clips); deterministic for the recipe."""
    if not audio:
        raise BenchError("pre-training got no speech", "check the recipe's dataset and languages")
    device = torch.device(device)
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    # gathering the distractors accumulates gradients with index_put: bit-identical only this way
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        return _pretrain(recipe, audio, device, on_update)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def _pretrain(recipe: ContrastiveRecipe, audio: Sequence[np.ndarray], device: torch.device,
              on_update: Callable[[int, dict[str, float]], None] | None) -> PretrainOutcome:
    from transformers import Wav2Vec2ForPreTraining
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    start = time.perf_counter()
    seed_everything(recipe.seed)
    model = Wav2Vec2ForPreTraining(pretraining_config(recipe)).to(device)

    lengths = [len(a) for a in audio]
    frames = model._get_feat_extract_output_lengths(torch.tensor(lengths, dtype=torch.long)).tolist()
    usable = [i for i, n in enumerate(frames) if n >= 2 * recipe.mask_length]
    clips = [prepare_audio(audio[i], normalise=True) for i in usable]  # as fine-tuning does
    lengths = [lengths[i] for i in usable]
    frames = [frames[i] for i in usable]

    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=recipe.lr)
    scheduler = tri_stage_scheduler(optimizer, recipe.steps, recipe.warmup, recipe.hold)
    batches = endless_batches(lengths, int(recipe.batch_seconds * SAMPLING_RATE), recipe.seed)
    outcome = PretrainOutcome(model, utterances=len(usable), audio_seconds=sum(lengths) / SAMPLING_RATE)
    allowed_skips = max(10, recipe.steps // 4)
    for update in range(recipe.steps):
        batch = next(batches)
        inputs = pad_stack([clips[i] for i in batch])
        samples = torch.tensor([lengths[i] for i in batch], dtype=torch.long)
        attention = (torch.arange(inputs.shape[1])[None, :] < samples[:, None]).long()
        n_frames = torch.tensor([frames[i] for i in batch], dtype=torch.long)
        shape = (len(batch), int(model._get_feat_extract_output_lengths(torch.tensor(inputs.shape[1]))))
        valid = frame_mask(n_frames, shape[1])
        masked = _compute_mask_indices(shape, recipe.mask_prob, recipe.mask_length,
                                       attention_mask=valid, min_masks=2)
        negatives = _sample_negative_indices(shape, recipe.num_negatives, mask_time_indices=valid.numpy())
        model.set_gumbel_temperature(_temperature(recipe, update))
        out = model(inputs.to(device), attention_mask=attention.to(device),
                    mask_time_indices=torch.from_numpy(masked).to(device),
                    sampled_negative_indices=torch.from_numpy(negatives).to(device))
        n_masked = max(int(masked.sum()), 1)
        loss = out.loss / n_masked
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            # an infinite gradient (rare, from the codebook's perplexity) would turn every weight to NaN
            norm = torch.nn.utils.clip_grad_norm_(parameters, recipe.max_grad_norm)
            finite = bool(torch.isfinite(norm))
        if finite:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if not finite:
            outcome.skipped_updates += 1
            if outcome.skipped_updates > allowed_skips:
                raise BenchError(
                    f"pre-training diverged: the loss or its gradient was not finite in "
                    f"{outcome.skipped_updates} of {update + 1} updates (lr {recipe.lr:g})",
                    "lower the recipe's lr (pretrain_lr) or raise its warm-up (pretrain_warmup)",
                )
            continue
        stats = {
            "update": update + 1,
            "loss": loss.item(),
            "contrastive": out.contrastive_loss.item() / n_masked,
            "diversity": out.diversity_loss.item() / n_masked,
            "perplexity": out.codevector_perplexity.item(),
        }
        if (update + 1) % HISTORY_EVERY == 0 or update + 1 == recipe.steps or update == 0:
            outcome.history.append(stats)
        if on_update:
            on_update(update + 1, stats)
    model.eval()
    outcome.seconds = time.perf_counter() - start
    return outcome


def _learning_rate(recipe: ContrastiveRecipe, update: int) -> float:
    """The tri-stage schedule's learning rate after ``update`` updates (what its scheduler set)."""
    from harness.engine.schedule import tri_stage_factor

    return recipe.lr * tri_stage_factor(update, recipe.steps, recipe.warmup, recipe.hold)


def chance_contrastive_loss(recipe: ContrastiveRecipe) -> float:
    """The contrastive loss of a model that cannot tell the target from its distractors."""
    return math.log(recipe.num_negatives + 1)


def run(context: PrepareContext, name: str, recipe: ContrastiveRecipe, device: torch.device) -> Pretrained:
    """Pre-train ``recipe`` for :func:`..prepare`, with a progress bar and a log line per quarter."""
    audio = [u.audio for _, splits in load_corpus(context, recipe) for u in splits.train]
    stage = context.progress.stage(f"pretrain {name}", recipe.steps) if context.progress is not None else None
    quarter = max(recipe.steps // 4, 1)
    on_log = getattr(context, "on_log", None)
    started = time.perf_counter()
    window: list[float] = []

    def on_update(update: int, stats: dict[str, float]) -> None:
        if stage is not None:
            stage.advance()
            stage.set_postfix(loss=f"{stats['contrastive']:.3f}")
        if on_log is not None:  # trackers: the mean loss of every LOSS_WINDOW updates, as the loop reports it
            window.append(stats["loss"])
            if update % LOSS_WINDOW == 0 or update == recipe.steps:
                on_log(UpdateLog(update, recipe.steps, sum(window) / len(window),
                                 _learning_rate(recipe, update), time.perf_counter() - started))
                window.clear()
        if update % quarter == 0 and update < recipe.steps:
            context.log(f"  {name}: update {update}/{recipe.steps}, contrastive loss {stats['contrastive']:.3f}")

    outcome = pretrain(recipe, audio, device, on_update)
    if stage is not None:
        stage.close()
    first = outcome.history[0] if outcome.history else {}
    final = outcome.history[-1] if outcome.history else {}
    chance = chance_contrastive_loss(recipe)
    facts = {
        "seconds": round(outcome.seconds, 1),
        "utterances": outcome.utterances,
        "audio_hours": round(outcome.audio_seconds / 3600, 4),
        "skipped_updates": outcome.skipped_updates,
        "chance_contrastive_loss": round(chance, 4),
        "final": final,
        "history": outcome.history,
    }
    summary = (f"contrastive loss {first.get('contrastive', float('nan')):.3f} -> "
               f"{final.get('contrastive', float('nan')):.3f} (chance {chance:.3f})")
    return Pretrained(outcome.model, facts, summary)
