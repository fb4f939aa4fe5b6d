"""EMA of the trainable weights and the weight-decay schedule (SoMA's recipe, usable by every method):
order-one formula tests against re-derivations written here, the published schedule values, and the
trainer's exact resume with the EMA on."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from dgss.config import load_config
from dgss.engine.ema import EMA
from dgss.engine.schedulers import LRSchedule, Scheduler, WeightDecaySchedule
from dgss.engine.train_data import SyntheticSegDataset
from dgss.engine.trainer import Trainer, build_model, seed_everything
from dgss.errors import AdapterInitError, ConfigError

TINY = Path(__file__).resolve().parents[2] / "src" / "dgss" / "configs" / "tiny" / "rein_synthetic.yaml"


def _uniform(*shape, gen):
    return torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros(5, dtype=torch.float64))
        self.frozen = nn.Parameter(torch.zeros(2, dtype=torch.float64), requires_grad=False)


# ---------------------------------------------------------------------------------------------- EMA
@pytest.mark.parametrize("momentum", [0.3, 2e-4])
def test_ema_copies_before_begin_then_follows_the_formula_at_order_one(momentum):
    gen = torch.Generator().manual_seed(0)
    model = _Two()
    ema = EMA(model, momentum=momentum, begin_iter=3)
    assert set(ema.shadow) == {"a", "b"}  # trainable parameters only
    ref = None
    for finished in range(1, 9):
        with torch.no_grad():
            for p in (model.a, model.b):
                p.copy_(_uniform(*p.shape, gen=gen))
        ema.update(finished)
        theta = {"a": model.a.detach().clone(), "b": model.b.detach().clone()}
        if finished <= 3:  # before begin_iter: a copy; the first averaged step (finished == 3): a copy
            ref = theta
        else:
            ref = {k: (1 - momentum) * ref[k] + momentum * theta[k] for k in ref}
        for k in ref:
            torch.testing.assert_close(ema.shadow[k], ref[k], rtol=1e-12, atol=1e-12)
        if finished > 3:  # order one: the average is far from the raw weights
            assert (ema.shadow["a"] - theta["a"]).abs().max() > 1e-2
    assert ema.steps == 6


def test_ema_applied_swaps_in_and_restores_bitwise():
    gen = torch.Generator().manual_seed(1)
    model = _Two()
    ema = EMA(model, momentum=0.5, begin_iter=0)
    with torch.no_grad():
        model.a.copy_(_uniform(3, 4, gen=gen))
    ema.update(1)
    with torch.no_grad():
        model.a.copy_(_uniform(3, 4, gen=gen))
    ema.update(2)
    raw = model.a.detach().clone()
    with ema.applied():
        assert torch.equal(model.a, ema.shadow["a"]) and not torch.equal(model.a, raw)
    assert torch.equal(model.a, raw)


# ---------------------------------------------------------------------------------------------- weight decay
def test_weight_decay_cosine_published_values():
    s = WeightDecaySchedule("cosine", 40000, eta_min=1e-5, include_zero_groups=True)
    for t, base, want in ((0, 0.05, 0.05), (20000, 0.05, 0.025005), (40000, 0.05, 1e-5)):
        assert s.wd_at(t, base) == pytest.approx(want, rel=1e-12, abs=1e-15)
    for t, want in ((0, 0.0), (20000, 5e-6), (40000, 1e-5)):
        assert s.wd_at(t, 0.0) == pytest.approx(want, rel=1e-12, abs=1e-15)
    off = WeightDecaySchedule("cosine", 40000, eta_min=1e-5, include_zero_groups=False)
    assert [off.wd_at(t, 0.0) for t in (0, 20000, 40000)] == [0.0, 0.0, 0.0]
    assert off.wd_at(20000, 0.05) == s.wd_at(20000, 0.05)
    assert WeightDecaySchedule("constant", 40000).wd_at(12345, 0.05) == 0.05


def test_weight_decay_schedule_at_order_one_through_the_scheduler():
    """Order-one bases and eta_min; the groups' decay follows the re-derived cosine (and the lr its own curve)."""
    T, eta = 10, 0.4
    p1, p2 = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW(
        [{"params": [p1], "weight_decay": 0.9, "lr_mult": 1.0}, {"params": [p2], "weight_decay": 0.0, "lr_mult": 0.5}],
        lr=1.0,
    )
    sched = Scheduler(opt, LRSchedule("constant", 1.0, T), WeightDecaySchedule("cosine", T, eta, True))
    for t in (0, 3, 7, 10, 13):
        sched.set_iteration(t)
        c = (1 + math.cos(math.pi * min(t, T) / T)) / 2
        assert opt.param_groups[0]["weight_decay"] == pytest.approx(eta + (0.9 - eta) * c, rel=1e-12)
        assert opt.param_groups[1]["weight_decay"] == pytest.approx(eta * (1 - c), rel=1e-12, abs=1e-15)
        assert opt.param_groups[1]["lr"] == 0.5
    # the bases survive an optimiser state round trip (resume) and give the same values
    state = opt.state_dict()
    opt2 = torch.optim.AdamW([{"params": [p1]}, {"params": [p2]}], lr=1.0)
    opt2.load_state_dict(state)
    s2 = Scheduler(opt2, LRSchedule("constant", 1.0, T), WeightDecaySchedule("cosine", T, eta, True))
    s2.set_iteration(3)
    sched.set_iteration(3)
    assert [g["weight_decay"] for g in opt2.param_groups] == [g["weight_decay"] for g in opt.param_groups]


# ---------------------------------------------------------------------------------------------- trainer
def _run(tmp_path, name, *overrides, method="soma"):
    cfg = load_config(
        TINY,
        [
            "data.val=[]",
            "logging.interval=1",
            "logging.progress=false",
            "logging.tensorboard=false",
            f"train.work_dir={tmp_path / name}",
            f"model.method={method}",
            "data.train.batch_size=2",
            "loss.points=fixed",
            "loss.num_points=256",
            *overrides,
        ],
    )
    seed_everything(cfg.seed)
    model = build_model(cfg)
    return cfg, model, SyntheticSegDataset(8, 64, 64, num_classes=19, seed=0)


EMA_RUN = (
    "train.max_iters=4",
    "train.ckpt_interval=2",
    "train.keep_last=3",
    "ema.enabled=true",
    "ema.momentum=0.3",
    "ema.begin_iter=1",
    "optim.weight_decay_schedule.type=cosine",
    "optim.weight_decay_schedule.eta_min=1.0e-3",
    "optim.weight_decay_schedule.include_zero_groups=true",
)


def test_resume_with_ema_is_exact_and_saved_weights_are_the_ema(tmp_path):
    from dgss.models.checkpoint import read_checkpoint

    cfg, model, data = _run(tmp_path, "ref", *EMA_RUN)
    seen = []

    def validate(m):
        seen.append({k: v.clone() for k, v in m.trainable_state_dict().items()})
        return {"mean_mIoU": 0.0}

    ref = Trainer(cfg, model, data, validate=validate)
    ref.fit()
    ema_ref = {k: v.clone() for k, v in ref.ema.shadow.items()}
    raw_ref = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert any(not torch.equal(ema_ref[k], raw_ref[k]) for k in raw_ref)  # the average is not the weights
    saved, _ = read_checkpoint(tmp_path / "ref" / "iter_000004.safetensors")
    for k in raw_ref:
        assert torch.equal(saved[k], ema_ref[k]), k  # the weights file holds the EMA
    assert all(torch.equal(seen[-1][k], ema_ref[k]) for k in raw_ref)  # validation saw the EMA
    state = torch.load(tmp_path / "ref" / "iter_000004.train_state.pt", weights_only=True)
    assert all(torch.equal(state["ema"]["raw"][k], raw_ref[k]) for k in raw_ref)  # raw weights kept

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for f in (tmp_path / "ref").glob("iter_000002.*"):
        shutil.copy(f, resumed / f.name)
    cfg2, model2, data2 = _run(tmp_path, "resumed", *EMA_RUN)
    res = Trainer(cfg2, model2, data2)
    res.fit(resume=True)
    assert [h["iter"] for h in res.history] == [3, 4]
    assert [h["loss"] for h in res.history] == [h["loss"] for h in ref.history[2:]]
    for n, p in model2.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, raw_ref[n]), n
            assert torch.equal(res.ema.shadow[n], ema_ref[n]), n
    groups = [g["weight_decay"] for g in res.optimizer.param_groups]
    assert groups == [g["weight_decay"] for g in ref.optimizer.param_groups] and 0.0 not in groups


def test_resume_refuses_an_ema_mismatch(tmp_path):
    cfg, model, data = _run(tmp_path, "a", "train.max_iters=2", "train.ckpt_interval=2", "ema.enabled=true")
    Trainer(cfg, model, data).fit()
    cfg2, model2, data2 = _run(tmp_path, "a", "train.max_iters=3", "train.ckpt_interval=2")
    with pytest.raises(Exception, match="EMA on"):
        Trainer(cfg2, model2, data2).fit(resume=True)


def test_uninitialised_soma_refuses_to_train(tmp_path):
    cfg, _, data = _run(tmp_path, "u", "train.max_iters=1")
    seed_everything(cfg.seed)
    model = build_model(cfg, initialize_adapter=False)
    with pytest.raises(AdapterInitError, match="never initialised"):
        Trainer(cfg, model, data).fit()


@pytest.mark.parametrize(
    "override, key",
    [
        ("ema.momentum=0", "ema.momentum"),
        ("ema.begin_iter=-1", "ema.begin_iter"),
        ("optim.weight_decay_schedule.eta_min=-1", "optim.weight_decay_schedule.eta_min"),
        ("optim.weight_decay_schedule.include_zero_groups=true", "optim.weight_decay_schedule"),
    ],
)
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(TINY, [override])


@pytest.mark.parametrize("protocol, want", [("soma", (2048, 1024)), ("dg", None)])
def test_soma_protocol_sets_the_cityscapes_test_box(tmp_path, monkeypatch, protocol, want):
    """data.protocol soma: Cityscapes val fitted into 2048x1024 (the default protocol leaves it to EVAL_RESIZE,
    1024x512); an explicit resize of a target still wins."""
    import dgss.engine.evaluator as ev
    from dgss.engine.distributed import DistContext
    from dgss.engine.trainer import Validator
    from dgss.testing import tiny_segmentor, write_cityscapes_scenes

    write_cityscapes_scenes(tmp_path / "cs", n=1)
    seen = []
    monkeypatch.setattr(ev, "evaluate", lambda predict, ds, *, resize=None, **kw: seen.append(resize))
    cfg = load_config(
        TINY,
        [
            f"data.protocol={protocol}",
            f"data.val=[{{dataset: cityscapes, root: {tmp_path / 'cs'}}}, "
            f"{{dataset: cityscapes, root: {tmp_path / 'cs'}, resize: [640, 320]}}]",
        ],
    )
    model = tiny_segmentor("rein")
    Validator(cfg, model, DistContext())(model)
    assert [None if r is None else r.box for r in seen] == [want, (640, 320)]
