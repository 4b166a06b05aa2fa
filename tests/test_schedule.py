import math

import pytest
import torch

from harness.engine.schedule import tri_stage_factor, tri_stage_scheduler


def test_tri_stage_shape_10_40_50():
    total = 100
    f = [tri_stage_factor(s, total) for s in range(total)]
    assert f[0] == pytest.approx(0.01)
    assert f[5] == pytest.approx(0.01 + 0.99 * 0.5)  # halfway through the 10-step warm-up
    assert all(v == 1.0 for v in f[10:50])  # 40 % constant
    assert f[50] == 1.0 and f[75] == pytest.approx(math.sqrt(0.05))  # exponential decay
    assert all(a > b for a, b in zip(f[50:], f[51:]))
    assert tri_stage_factor(total, total) == pytest.approx(0.05)


def test_scheduler_drives_the_optimiser_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-3)
    sched = tri_stage_scheduler(opt, total=10, warmup=0.2, hold=0.3)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[2:5] == [pytest.approx(1e-3)] * 3
    assert lrs[5] == pytest.approx(1e-3) and lrs[9] < lrs[6] < 1e-3
