"""The engine's dev scoring during training (train.eval_every), best-dev parameters
(train.select) and a learning rate of its own for the CTC layer (train.head_lr)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import golden_cells
from harness.api import ProtocolRequest
from harness.engine import CellSetup, fine_tune, fit, head_parameters
from harness.engine.fit import _optimizer
from harness.plan.config import RuntimeSettings, TrainSettings
from plugins.models.hf import build_tiny

BASE = TrainSettings(steps=50, batch_seconds=3.0, lr=3e-3)


def request(**train_changes) -> ProtocolRequest:
    return ProtocolRequest(build_model=lambda r: build_tiny("wav2vec2", r), data=golden_cells.tiny_splits(),
                           language="de", seed=3, train=dataclasses.replace(BASE, **train_changes),
                           runtime=RuntimeSettings(device="cpu", threads=1, feature_cache="on"), options={})


@pytest.fixture(scope="module")
def plain():
    torch.set_num_threads(1)
    return fine_tune(request())


def test_scoring_dev_during_training_changes_no_number(plain):
    scored = fine_tune(request(eval_every=20))
    assert scored.train_info["loss_curve"] == plain.train_info["loss_curve"]
    assert scored.splits["test"].hypotheses == plain.splits["test"].hypotheses
    curve = scored.train_info["dev_curve"]
    assert [u for u, _ in curve] == [20, 40, 50]  # every 20 updates and after the last
    assert all(0.0 <= v <= 1.5 for _, v in curve)
    assert "selected_update" not in scored.train_info and "dev_curve" not in plain.train_info


def test_best_dev_decodes_with_the_parameters_of_the_best_planted_dev_score():
    torch.set_num_threads(1)
    setup = CellSetup.start(request(eval_every=10, select="best-dev"))
    model = setup.build_model()
    for p in model.feature_encoder_parameters():
        p.requires_grad_(False)
    features = setup.training_features(model)
    setup.build_cache(features)
    setup.seed_everything()
    planted = iter([0.6, 0.2, 0.5, 0.4, 0.3])  # dev scores at updates 10, 20, 30, 40, 50: best at 20
    snapshots = []

    def on_eval() -> float:
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
        return next(planted)

    result = fit(model, features, setup.splits["train"], setup.train, seed=setup.seed, device=setup.device,
                 precision=setup.precision, amp=setup.amp, on_eval=on_eval)
    assert result.selected_update == 20
    assert result.dev_curve == ((10, 0.6), (20, 0.2), (30, 0.5), (40, 0.4), (50, 0.3))
    now = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    assert all(torch.equal(now[n], snapshots[1][n]) for n in now)  # the parameters of update 20 ...
    assert not all(torch.equal(now[n], snapshots[-1][n]) for n in now)  # ... not the last update's


def test_best_dev_through_the_protocol_records_the_chosen_update(plain):
    chosen = fine_tune(request(eval_every=25, select="best-dev"))
    curve = chosen.train_info["dev_curve"]
    best = min(curve, key=lambda point: point[1])
    assert chosen.train_info["selected_update"] == best[0]
    assert chosen.train_info["loss_curve"] == plain.train_info["loss_curve"]  # training itself is the same


def test_head_lr_trains_the_ctc_layer_in_a_group_of_its_own(plain):
    setup = CellSetup.start(request(head_lr=3e-2))
    model = setup.build_model()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = _optimizer(model, named, setup.train, fused=False)
    head = head_parameters(model)
    assert [g["lr"] for g in optimizer.param_groups] == [3e-3, 3e-2]
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == {id(p) for p in head}
    assert head == list(model.model.lm_head.parameters())
    same = fine_tune(request(head_lr=BASE.lr))  # two groups at one rate: the single group's numbers
    assert same.train_info["loss_curve"] == plain.train_info["loss_curve"]
    faster = fine_tune(request(head_lr=3e-2))
    assert faster.train_info["loss_curve"] != plain.train_info["loss_curve"]
