import math

import pytest
import torch

from dgss.engine.schedulers import LRSchedule, Scheduler


def test_poly_matches_formula():
    s = LRSchedule("poly", 1e-4, 40000, power=0.9)
    for t in (0, 1, 1000, 20000, 39999):
        assert s.lr_at(t) == pytest.approx(1e-4 * (1 - t / 40000) ** 0.9, rel=1e-12)
    assert s.lr_at(40000) == 0.0 and s.lr_at(50000) == 0.0


def test_warmup_poly():
    s = LRSchedule("warmup_poly", 6e-5, 40000, warmup_iters=10000, warmup_start_factor=1e-6)
    assert s.lr_at(0) == pytest.approx(6e-5 * 1e-6)
    assert s.lr_at(5000) == pytest.approx(6e-5 * (1e-6 + (1 - 1e-6) * 0.5))
    assert s.lr_at(10000) == pytest.approx(6e-5)
    assert s.lr_at(25000) == pytest.approx(6e-5 * 0.5**0.9)
    lrs = [s.lr_at(t) for t in range(0, 40000, 500)]
    peak = lrs.index(max(lrs))
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1], strict=False))


@pytest.mark.parametrize("total", [50, 1000])
def test_onecycle_equals_torch(total):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-4)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=1e-4,
        total_steps=total,
        pct_start=0.1,
        anneal_strategy="cos",
        div_factor=10,
        final_div_factor=10,
        cycle_momentum=False,
    )
    ours = LRSchedule("onecycle", 1e-4, total, pct_start=0.1, div_factor=10, final_div_factor=10)
    for t in range(total):
        assert ours.lr_at(t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15), t
        opt.step()
        ref.step() if t < total - 1 else None
    assert ours.lr_at(0) == pytest.approx(1e-5) and ours.lr_at(total - 1) == pytest.approx(1e-6)


def test_scheduler_sets_groups_with_multipliers():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [a], "lr_mult": 1.0}, {"params": [b], "lr_mult": 0.1}], lr=1.0)
    sch = Scheduler(opt, LRSchedule("poly", 1e-3, 10, power=1.0))
    assert sch.set_iteration(5) == pytest.approx(5e-4)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([5e-4, 5e-5])
    state = sch.state_dict()
    sch2 = Scheduler(opt, LRSchedule("poly", 1e-3, 10, power=1.0))
    sch2.load_state_dict(state)
    assert sch2.last_iter == 5 and math.isfinite(sch2.schedule.lr_at(9))
