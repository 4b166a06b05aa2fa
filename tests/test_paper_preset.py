"""Preset paper's HuggingSound settings: the linear schedule (against HuggingSound's own learning
rates, stored), the floor, model config overrides per preset and how they key a cell."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from harness.engine.schedule import stage_lengths, tri_stage_factor, tri_stage_scheduler
from harness.errors import BenchError
from harness.plan.config import DECAYS, TrainSettings, load_config, parse_set
from harness.plan.planner import plan_run, resolve_models
from harness.plugins import process_registry

REFERENCE = Path(__file__).parent / "data" / "huggingsound_lr.json"
#: HuggingSound 0.1.6's ModelArguments defaults (trainer.py lines 81-94), which preset paper sets
HUGGINGSOUND_MODEL = {"attention_dropout": 0.1, "activation_dropout": 0.1, "hidden_dropout": 0.1,
                      "feat_proj_dropout": 0.1, "final_dropout": 0.1, "layerdrop": 0.0, "mask_time_length": 10,
                      "mask_feature_prob": 0.0, "mask_feature_length": 10}


def _bench_lrs(case: dict) -> list[float]:
    """bench's learning rate of every update, read from the optimiser as fit() drives it."""
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([p], lr=case["lr"])
    scheduler = tri_stage_scheduler(optimizer, case["steps"], case["warmup"], case["hold"], decay="linear",
                                    min_lr=case["min_lr"])
    out = []
    for _ in range(case["steps"]):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("name", ["paper", "floor", "uneven"])
def test_linear_decay_is_huggingsounds_schedule_update_by_update(name):
    """tests/data/huggingsound_lr.json: HuggingSound 0.1.6's CTCTrainer (create_scheduler,
    trainer.py 383-409, under transformers 4.28.1) stepped as its Trainer steps it, written by
    ``benchmarks/huggingsound_vs_bench.py --role lr-reference``."""
    case = json.loads(REFERENCE.read_text())["cases"][name]
    warmup, _, decay = stage_lengths(case["steps"], case["warmup"], case["hold"])
    assert (warmup, decay) == (case["lr_warmup_steps"], case["lr_decay_steps"])
    ours = _bench_lrs(case)
    assert len(ours) == len(case["lrs"]) == case["steps"]
    assert ours == case["lrs"]  # the same operations: bit for bit
    if name == "paper":  # 4,000 updates at 6e-5: 0 at the first, the peak from 400 to 2,000, then linear
        assert ours[0] == 0.0 and ours[200] == pytest.approx(3e-5) and ours[400] == ours[1999] == 6e-5
        assert ours[3000] == pytest.approx(3e-5) and ours[3999] == pytest.approx(6e-5 / 2000)
    if name == "floor":  # HuggingSound's min_learning_rate bounds warm-up and decay
        assert min(ours) == pytest.approx(1e-4) and ours[0] == pytest.approx(1e-4)


def test_exponential_default_is_unchanged_and_the_floor_applies_to_both_shapes():
    assert DECAYS == ("exponential", "linear")
    total = 100
    old = [0.01 + (1.0 - 0.01) * s / 10 if s < 10 else 1.0 if s < 50 else math.exp(math.log(0.05) * ((s - 50) / 50))
           for s in range(total)]
    assert [tri_stage_factor(s, total) for s in range(total)] == old
    assert [tri_stage_factor(s, total, floor=0.0) for s in range(total)] == old
    floored = [tri_stage_factor(s, total, floor=0.2) for s in range(total)]
    assert min(floored) == 0.2 and floored[:10] == [max(0.2, v) for v in old[:10]]
    linear = [tri_stage_factor(s, total, decay="linear") for s in range(total)]
    assert linear[0] == 0.0 and linear[5] == 0.5 and linear[50] == 1.0 and linear[99] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="decay must be one of"):
        tri_stage_factor(0, 10, decay="cosine")


def test_train_settings_check_decay_floor_and_model_config():
    assert TrainSettings(decay="linear", min_lr=1e-4, lr=1e-3).keyed()["decay"] == "linear"
    plain = TrainSettings().keyed()
    assert "decay" not in plain and "min_lr" not in plain and "model_config" not in plain  # old keys unchanged
    for bad, message in (({"decay": "cosine"}, "train.decay must be one of 'exponential', 'linear'"),
                         ({"min_lr": 1.0}, "train.min_lr"),
                         ({"model_config": {"layerdrp": 0.1}}, "unknown key 'layerdrp'. Did you mean 'layerdrop'?"),
                         ({"model_config": {"mask_time_prob": 0.1}}, "train.mask_time_prob"),
                         ({"model_config": {"mask_time_length": 2.5}}, "mask_time_length must be an integer"),
                         ({"model_config": {"attention_dropout": 1.5}}, "attention_dropout must be a number")):
        with pytest.raises(BenchError) as info:
            TrainSettings(**bad)
        assert message in str(info.value) + info.value.hint
        assert "\n" not in info.value.message
    assert TrainSettings(model_config={"layerdrop": 0}).model_config == {"layerdrop": 0.0}  # 0 and 0.0: one key


def test_preset_paper_sets_huggingsounds_choices_and_the_checkpoints_own_stay_available():
    paper = load_config(preset="paper")
    assert (paper.train.steps, paper.train.lr, paper.train.warmup, paper.train.hold) == (4000, 6e-5, 0.1, 0.4)
    assert (paper.train.decay, paper.train.min_lr, paper.train.mask_time_prob) == ("linear", 0.0, 0.05)
    assert dict(paper.train.model_config) == HUGGINGSOUND_MODEL
    own = load_config(preset="paper", overrides=parse_set(["train.model_config={}"]))
    assert dict(own.train.model_config) == {}
    one = load_config(preset="paper", overrides=parse_set(["train.model_config.layerdrop=0.1"]))
    assert one.train.model_config["layerdrop"] == 0.1 and one.train.model_config["attention_dropout"] == 0.1
    assert load_config().train.decay == "exponential" and dict(load_config().train.model_config) == {}
    with pytest.raises(BenchError, match="unknown key 'atention_dropout'"):
        load_config(preset="paper", overrides=parse_set(["train.model_config.atention_dropout=0.1"]))
    with pytest.raises(BenchError, match="train.model_config must be a table"):
        load_config(overrides=parse_set(["train.model_config=3"]))


def _config(**train):
    overrides = {"run": {"models": ["tiny-wav2vec2", "tiny-hubert"], "langs": ["de"], "seeds": 1,
                         "datasets": ["synthetic"]},
                 "train": train}
    return load_config(preset="smoke", overrides=overrides)


def test_model_config_reaches_every_models_options_and_key_and_its_transformers_config():
    registry = process_registry()
    plain = {c.cell.model: c for c in plan_run(_config(), registry).cells}
    paper = {c.cell.model: c for c in plan_run(_config(model_config=HUGGINGSOUND_MODEL), registry).cells}
    for model in ("tiny-wav2vec2", "tiny-hubert"):
        assert plain[model].key != paper[model].key  # changed settings: computed again
        assert paper[model].identity["model"]["options"] == HUGGINGSOUND_MODEL
        assert "model_config" not in paper[model].identity["train"]
    # the same settings given per model key the cell the same way
    per_model = load_config(preset="smoke", overrides={
        "run": {"models": ["tiny-wav2vec2"], "langs": ["de"], "seeds": 1},
        "models": {"tiny-wav2vec2": HUGGINGSOUND_MODEL}})
    assert plan_run(per_model, registry).cells[0].key == paper["tiny-wav2vec2"].key
    # a model's own [models.NAME] option wins over the preset-wide one
    mixed = load_config(preset="smoke", overrides={
        "run": {"models": ["tiny-wav2vec2"], "langs": ["de"], "seeds": 1},
        "models": {"tiny-wav2vec2": {"layerdrop": 0.2}}, "train": {"model_config": HUGGINGSOUND_MODEL}})
    (_, options), = resolve_models(mixed, registry).values()
    assert options["layerdrop"] == 0.2 and options["attention_dropout"] == 0.1
    # and the transformers config gets them
    from harness.api import ModelRequest

    spec = registry.model("tiny-wav2vec2").spec
    built = spec.build(ModelRequest(vocab_size=12, blank_id=0, seed=0, mask_time_prob=0.05,
                                    options=paper["tiny-wav2vec2"].model_options))
    config = built.model.config
    assert (config.attention_dropout, config.activation_dropout, config.hidden_dropout, config.feat_proj_dropout,
            config.final_dropout, config.layerdrop, config.mask_time_length) == (0.1, 0.1, 0.1, 0.1, 0.1, 0.0, 10)


def test_a_model_takes_only_the_overrides_it_declares():
    from harness.plan.config import TrainSettings as T

    train = T(model_config=HUGGINGSOUND_MODEL)
    assert train.model_config_for(("mask_time_length", "final_dropout")) == {"final_dropout": 0.1,
                                                                             "mask_time_length": 10}
    assert train.model_config_for(()) == {}
