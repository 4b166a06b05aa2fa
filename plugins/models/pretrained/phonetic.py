"""Supervised phonetic pre-training of the tiny wav2vec2 model: CTC on IPA phonemes.

The targets are eSpeak NG's own IPA transcriptions of each utterance's text in its language
(for the synthetic dataset, exactly the phonemes that eSpeak NG spoke), with its stress marks,
syllable dots and language-switch markers removed; the alphabet is the union of the
languages' phones, so a multilingual model shares phones between languages. Training is the
one fine-tuning loop every cell goes through (frozen random feature encoder, cached outputs,
Adam, tri-stage schedule), so it costs what a cell costs per update. This is the embedded
analogue of phonetic supervision in pre-training, as UniSpeech combines it with
self-supervision.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import re
from collections import defaultdict
from collections.abc import Sequence

import torch

from harness.api import CellOutcome, DatasetSplits, MetricSpec, ModelRequest, PrepareContext, SpeechCTCModel
from harness.plan.config import RuntimeSettings, TrainSettings
from harness.errors import BenchError
from harness.engine import fine_tune_and_evaluate

from ..hf import build_tiny
from .checkpoints import Pretrained
from .corpus import load_corpus
from .recipe import PhoneticRecipe

#: eSpeak NG marks a word it reads with another language's rules as ``(en)word(it)``
_LANGUAGE_SWITCH = re.compile(r"\([^()]*\)")
_STRESS = "ˈˌ"
#: how the loop's error messages and normaliser name the targets (no language's rules apply)
TARGETS = "ipa"


def ipa_targets(raw: str, stress: bool = False) -> str:
    """The training target for eSpeak NG's IPA of one utterance."""
    dropped = "." + ("" if stress else _STRESS)
    text = _LANGUAGE_SWITCH.sub("", raw).translate({ord(ch): None for ch in dropped})
    return " ".join(text.split())


def _phonemize_all(batches: list[tuple[str, list[str]]]) -> list[list[str]]:
    from plugins.espeak import phonemize

    return [phonemize(texts, language) for language, texts in batches]


def transcribe(batches: list[tuple[str, list[str]]]) -> list[list[str]]:
    """eSpeak NG's IPA for each (language, texts), in a fresh process: the library keeps state
    between calls, so a fresh one gives the same transcriptions every time."""
    from plugins.espeak import ESpeakError

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            return pool.submit(_phonemize_all, batches).result()
        except ESpeakError as exc:
            raise BenchError(f"phonetic pre-training: {exc}", "pre-train on languages eSpeak NG has a voice for") from None


def phonetic_splits(corpus: Sequence[tuple[str, DatasetSplits]], stress: bool) -> DatasetSplits:
    """One training and one dev set over all languages, with IPA targets; ids are ``LANG/id``."""
    parts = [(split, language, getattr(splits, split)) for split in ("train", "dev") for language, splits in corpus]
    transcriptions = transcribe([(language, [u.text for u in utterances]) for _, language, utterances in parts])
    out: dict[str, list] = {"train": [], "dev": []}
    for (split, language, utterances), ipa in zip(parts, transcriptions):
        out[split].extend(dataclasses.replace(u, id=f"{language}/{u.id}", text=ipa_targets(raw, stress))
                          for u, raw in zip(utterances, ipa))
    return DatasetSplits(out["train"], out["dev"], [])


def phone_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Edit distance over IPA characters (a phone such as t͡ʃ or ɑ̃ counts as two or three)."""
    import jiwer

    return float(jiwer.cer(list(references), list(hypotheses)))


def pretrain(recipe: PhoneticRecipe, data: DatasetSplits, device: str = "cpu", threads: int = 0,
             progress=None, on_log=None) -> tuple[torch.nn.Module, CellOutcome]:
    """Train a fresh tiny wav2vec2 with CTC on ``data`` (IPA targets); the model and the loop's outcome."""
    built: list[SpeechCTCModel] = []

    def build(request: ModelRequest) -> SpeechCTCModel:
        built.append(build_tiny("wav2vec2", request))
        return built[-1]

    train = TrainSettings(steps=recipe.steps, lr=recipe.lr, warmup=recipe.warmup, hold=recipe.hold,
                          batch_seconds=recipe.batch_seconds, max_grad_norm=recipe.max_grad_norm,
                          freeze_feature_encoder=True, mask_time_prob=0.0)
    runtime = RuntimeSettings(device=device, threads=threads, checkpoint_minutes=0)
    per = MetricSpec("per", phone_error_rate, description="phone error rate")
    outcome = fine_tune_and_evaluate(build, data, TARGETS, recipe.seed, train, runtime, [per], progress=progress,
                                     on_log=on_log)
    model = built[-1].model.cpu()
    model.eval()
    return model, outcome


def run(context: PrepareContext, name: str, recipe: PhoneticRecipe, device: torch.device) -> Pretrained:
    """Pre-train ``recipe`` for :func:`..prepare`, with the loop's progress bars."""
    data = phonetic_splits(load_corpus(context, recipe, recipe.dev_minutes), recipe.stress)
    model, outcome = pretrain(recipe, data, str(device), context.threads, context.progress,
                              getattr(context, "on_log", None))
    info = outcome.train_info
    by_language: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for utterance_id, reference, hypothesis in outcome.splits["dev"].hypotheses:
        by_language[utterance_id.split("/", 1)[0]].append((reference, hypothesis))
    per = outcome.splits["dev"].metrics["per"]
    curve = info.get("loss_curve") or [float("nan")]
    facts = {
        "seconds": round(info.get("train_seconds", 0.0) + info.get("encode_seconds", 0.0), 1),
        "utterances": info["train_utterances"],
        "audio_hours": round(info["train_hours"], 4),
        "phones": list(outcome.vocabulary[1:]),
        "dev_phone_error_rate": round(per, 4),
        "dev_phone_error_rate_by_language": {
            language: round(phone_error_rate(*zip(*pairs)), 4) for language, pairs in by_language.items()},
        "loss_curve": curve,
        "skipped": outcome.skipped,
    }
    summary = (f"CTC loss {curve[0]:.3f} -> {curve[-1]:.3f}, phone error rate {per:.3f} on held-out sentences "
               f"({len(outcome.vocabulary) - 1} phones)")
    return Pretrained(model, facts, summary)
