"""Augmentation baselines (baselines.md §5-7): PASTA against a re-derivation from the spec text (with the
reference's frequency-grid quirk), AdvStyle's style step (no parameter touched, loss goes up, the ascent
matches finite differences), the trainer's doubled batch and exact resume, the GTR-LTR interface."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dgss.config import load_config
from dgss.data.augment import GtrLtr, Pasta, axis_frequency, build_image_augment, pasta_sigma
from dgss.data.datasets import sample_seed
from dgss.engine.advstyle import AdvStyle
from dgss.engine.train_data import StreamDataset, SyntheticSegDataset
from dgss.engine.trainer import FixedPointCriterion, Trainer, build_model, seed_everything
from dgss.errors import ConfigError, GtrLtrError, TrainingError
from dgss.losses import Mask2FormerCriterionConfig, SegmentationLoss

TINY = Path(__file__).resolve().parents[2] / "src" / "dgss" / "configs" / "tiny" / "rein_synthetic.yaml"


# ================================================================================================ PASTA
def spec_grid(n: int) -> np.ndarray:
    """The reference's centred offset list of one axis, written out as the spec states it."""
    if n % 2:
        return np.arange(-(n // 2), n // 2 + 1, dtype=np.float64)
    return np.array(list(range(-(n // 2 - 1), 1)) + list(range(n // 2)), dtype=np.float64)


def spec_pasta(x01: np.ndarray, z: np.ndarray, alpha=3.0, beta=0.25, k=2.0, exact=False) -> np.ndarray:
    """baselines.md §5 step by step in numpy: grid, fftshift, σ, ε = 1 + σz, amplitude x ε, IFFT, clip."""
    _, h, w = x01.shape
    if exact:
        gh, gw = np.abs(np.fft.fftfreq(h) * h), np.abs(np.fft.fftfreq(w) * w)
        rho = np.sqrt(gh[:, None] ** 2 + gw[None, :] ** 2)
        rho_max = rho.max()
    else:
        gh, gw = spec_grid(h), spec_grid(w)
        rho_c = np.sqrt(gh[:, None] ** 2 + gw[None, :] ** 2)
        rho_max = rho_c.max()
        rho = np.fft.fftshift(rho_c)  # numpy's fftshift, as the reference
    sigma = (alpha * rho / rho_max) ** k + beta
    f = np.fft.fft2(x01, axes=(-2, -1))
    amp, phase = np.abs(f), np.angle(f)
    eps = 1.0 + sigma[None] * z
    out = np.real(np.fft.ifft2(amp * eps * np.exp(1j * phase), axes=(-2, -1)))
    return np.clip(out, 0.0, 1.0)


def test_reference_frequency_grid_quirk_per_axis():
    # even n: u for u < n/2, n-1-u above (true n-u); odd n: DC gets 1, the last bin 0
    assert axis_frequency(4).tolist() == [0, 1, 1, 0]
    assert axis_frequency(6).tolist() == [0, 1, 2, 2, 1, 0]
    assert axis_frequency(5).tolist() == [1, 2, 2, 1, 0]
    assert axis_frequency(6, exact=True).tolist() == [0, 1, 2, 3, 2, 1]
    for n in (1, 2, 5, 8, 9):
        assert axis_frequency(n).tolist() == np.abs(np.fft.fftshift(spec_grid(n))).tolist()
    s = pasta_sigma(4, 6)  # both even: DC radius 0 -> sigma = beta
    assert s[0, 0] == 0.25 and abs(float(s.max()) - (3.0**2 + 0.25)) < 1e-12
    assert torch.all(pasta_sigma(4, 6, mode="const") == 0.25)


@pytest.mark.parametrize("shape,exact", [((6, 7), False), ((5, 8), False), ((6, 7), True)])
def test_pasta_matches_the_spec_formula(shape, exact):
    h, w = shape
    image = torch.randint(0, 256, (3, h, w), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    pasta = Pasta(alpha=3.0, beta=0.25, k=2.0, exact_frequency_grid=exact, dtype=torch.float64)
    out = pasta.perturb(image.double() / 255, torch.Generator().manual_seed(11))
    z = torch.randn((3, h, w), generator=torch.Generator().manual_seed(11), dtype=torch.float64).numpy()
    want = spec_pasta(image.double().numpy() / 255, z, exact=exact)
    assert 0.05 < float(np.mean(want[(want > 0) & (want < 1)].size / want.size)) and not np.allclose(
        want, image.numpy() / 255, atol=0.05
    )  # order-one change, not everything clipped
    np.testing.assert_allclose(out.numpy(), want, rtol=0, atol=1e-12)
    q = pasta(image, torch.Generator().manual_seed(11))  # uint8 by x255 and truncation
    assert q.dtype == torch.uint8 and torch.equal(q, torch.from_numpy((want * 255).astype(np.uint8)))
    # default float32: same draws in float32, same result up to float32 rounding (<= 1 uint8 level)
    z32 = torch.randn((3, h, w), generator=torch.Generator().manual_seed(11)).double().numpy()
    want32 = spec_pasta(image.double().numpy() / 255, z32, exact=exact)
    fast = Pasta(exact_frequency_grid=exact)
    np.testing.assert_allclose(
        fast.perturb(image.float() / 255, torch.Generator().manual_seed(11)).numpy(), want32, rtol=0, atol=1e-5
    )
    diff = (
        fast(image, torch.Generator().manual_seed(11)).int() - torch.from_numpy((want32 * 255).astype(np.uint8)).int()
    )
    assert diff.abs().max() <= 1 and (diff == 0).float().mean() > 0.95


def test_quirk_grid_differs_from_exact_grid_and_const_mode():
    image = torch.full((3, 6, 7), 128, dtype=torch.uint8)
    image[:, :, 3:] = 30
    outs = [
        Pasta(exact_frequency_grid=e, dtype=torch.float64).perturb(
            image.double() / 255, torch.Generator().manual_seed(0)
        )
        for e in (False, True)
    ]
    assert not torch.allclose(outs[0], outs[1])
    const = Pasta(mode="const", beta=0.0, dtype=torch.float64).perturb(
        image.double() / 255, torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(const, image.double() / 255, rtol=0, atol=1e-12)  # sigma 0: identity


def test_pasta_is_deterministic_per_generator_and_respects_prob():
    image = torch.randint(0, 256, (3, 16, 12), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    p = Pasta()
    a, b = p(image, torch.Generator().manual_seed(5)), p(image, torch.Generator().manual_seed(5))
    c = p(image, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(Pasta(prob=0.0)(image, torch.Generator().manual_seed(5)), image)


def test_stream_dataset_applies_pasta_with_the_sample_generator():
    base = SyntheticSegDataset(3, 16, 16, num_classes=19, seed=0)
    ds = StreamDataset(base, seed=42, augment=Pasta())
    item = ds[(2, 1)]
    want = Pasta()(base[2]["image"], torch.Generator().manual_seed(sample_seed(42, 2, 1))).float()
    assert torch.equal(item["image"], want) and torch.equal(item["label"], base[2]["label"])
    assert not torch.equal(item["image"], base[2]["image"])


# ================================================================================================ config
def test_augment_config_section_is_typed_and_checked():
    cfg = load_config(
        TINY,
        [
            "augment.pasta.enabled=true",
            "augment.pasta.exact_frequency_grid=true",
            "augment.advstyle.enabled=true",
            "augment.advstyle.lr=0.5",
        ],
    )
    assert cfg.augment.pasta.exact_frequency_grid and cfg.augment.advstyle.lr == 0.5
    assert [type(s).__name__ for s in build_image_augment(cfg.augment).steps] == ["Pasta"]
    assert build_image_augment(load_config(TINY).augment) is None  # off by default
    with pytest.raises(ConfigError, match=r"augment\.pasta\.alpah.*did you mean 'augment\.pasta\.alpha'"):
        load_config(TINY, ["augment.pasta.alpah=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'augment\.cutmix'"):
        load_config(TINY, ["augment.cutmix.enabled=true"])
    with pytest.raises(ConfigError, match=r"'augment\.advstyle\.lr': must be > 0"):
        load_config(TINY, ["augment.advstyle.lr=0"])
    with pytest.raises(ConfigError, match=r"'augment\.pasta\.prob': must be in \[0, 1\]"):
        load_config(TINY, ["augment.pasta.prob=1.5"])
    with pytest.raises(ConfigError, match=r"'augment\.advstyle\.stats_on'.*'normalized'"):
        load_config(TINY, ["augment.advstyle.stats_on=rgb"])
    with pytest.raises(ConfigError, match=r"'augment\.gtr_ltr\.style_dir': required when gtr_ltr is enabled"):
        load_config(TINY, ["augment.gtr_ltr.enabled=true"])


# ================================================================================================ AdvStyle
def _tiny_fp64():
    cfg = load_config(TINY, ["loss.points=fixed", "loss.num_points=256"])
    seed_everything(0)
    model = build_model(cfg).double().train()
    crit = FixedPointCriterion(Mask2FormerCriterionConfig(num_classes=19, num_points=256), seed=0)
    loss = SegmentationLoss(crit, 19)
    item = SyntheticSegDataset(1, 64, 64, num_classes=19, seed=3)[0]
    return model, loss, model.normalize(item["image"][None].double()), item["label"][None]


def _total(model, loss, x, y) -> float:
    with torch.no_grad():
        return float(sum(loss(model(x), y).values()))


@pytest.mark.parametrize("stats_on", ["normalized", "raw"])
def test_advstyle_step_touches_no_parameter_raises_the_loss_and_matches_finite_differences(stats_on):
    model, loss, x, y = _tiny_fp64()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    head = dict(model.head.named_parameters())
    sentinel = {n: torch.full_like(p, 0.5) for n, p in head.items()}  # a pending gradient must stay as it is
    for n, p in head.items():
        p.grad = sentinel[n].clone()
    gamma = 0.05
    adv = AdvStyle(lr=gamma, stats_on=stats_on, mean=model.mean, std=model.std)
    x_adv, style_loss = adv.perturb(model, loss, x, y)
    for n, p in model.named_parameters():
        if n.startswith("head."):
            assert torch.equal(p.grad, sentinel[n[len("head.") :]]), f"{n}: the style step changed its gradient"
        else:
            assert p.grad is None, f"{n} received a gradient from the style step"
        assert torch.equal(p, before[n]), f"{n} changed"
    l0, l1 = _total(model, loss, x, y), _total(model, loss, x_adv, y)
    assert abs(style_loss - l0) < 1e-9 and l1 > l0 + 1e-6, (l0, l1)

    # re-derivation (spec §6): stats of s, central finite differences of L w.r.t. each mu / sigma entry
    mean, std = model.mean.double(), model.std.double()
    s = x * std + mean if stats_on == "raw" else x
    mu = s.mean((2, 3), keepdim=True)
    sig = s.std((2, 3), keepdim=True, unbiased=True) + 1e-6
    s_hat = (s - mu) / sig

    def L(m, sd):
        z = sd * s_hat + m
        return _total(model, loss, (z - mean) / std if stats_on == "raw" else z, y)

    h = 1e-5 if stats_on == "normalized" else 1e-3
    grads = []
    for t in (mu, sig):
        g = torch.zeros_like(t)
        for idx in np.ndindex(*t.shape):
            e = torch.zeros_like(t)
            e[idx] = h
            g[idx] = (
                (L(mu + e, sig) - L(mu - e, sig)) / (2 * h) if t is mu else (L(mu, sig + e) - L(mu, sig - e)) / (2 * h)
            )
        grads.append(g)
    assert grads[0].abs().max() > 1e-4 and grads[1].abs().max() > 1e-4  # the loss depends on the style
    want = (sig + gamma * grads[1]) * s_hat + (mu + gamma * grads[0])
    if stats_on == "raw":
        want = (want - mean) / std
    torch.testing.assert_close(x_adv, want, rtol=0, atol=1e-6 * float(want.abs().max()))


def _trainer(tmp_path, *overrides, name="run"):
    cfg = load_config(
        TINY,
        [
            "data.val=[]",
            "logging.interval=1",
            "logging.progress=false",
            "logging.tensorboard=false",
            f"train.work_dir={tmp_path / name}",
            *overrides,
        ],
    )
    seed_everything(cfg.seed)
    model = build_model(cfg)
    data = SyntheticSegDataset(8, 64, 64, num_classes=19, seed=0)
    return cfg, model, data


def test_trainer_trains_on_the_doubled_batch_and_frozen_weights_stay(tmp_path):
    cfg, model, data = _trainer(
        tmp_path,
        "train.max_iters=2",
        "train.ckpt_interval=0",
        "data.train.batch_size=2",
        "augment.advstyle.enabled=true",
    )
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    trainer = Trainer(cfg, model, data)
    trainer.fit()
    assert seen == [2, 4, 2, 4]  # style step on B, optimiser step on [x, x_adv]
    assert all(torch.equal(v, frozen[k]) for k, v in model.encoder.state_dict().items())
    assert all("advstyle_loss" in h for h in trainer.history)


def test_resume_with_advstyle_and_pasta_is_exact(tmp_path):
    ov = (
        "train.max_iters=4",
        "train.ckpt_interval=2",
        "train.keep_last=2",
        "data.train.batch_size=2",
        "augment.advstyle.enabled=true",
        "augment.advstyle.prob=0.3",
        "augment.pasta.enabled=true",
    )
    cfg, model, data = _trainer(tmp_path, *ov, name="ref")
    ref = Trainer(cfg, model, data)
    ref.fit()
    assert any("advstyle_loss" in h for h in ref.history) and any("advstyle_loss" not in h for h in ref.history)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    for f in (tmp_path / "ref").glob("iter_000002.*"):
        shutil.copy(f, resumed_dir / f.name)
    cfg2, model2, data2 = _trainer(tmp_path, *ov, name="resumed")
    res = Trainer(cfg2, model2, data2)
    res.fit(resume=True)
    assert [h["iter"] for h in res.history] == [3, 4]
    assert ["advstyle_loss" in h for h in res.history] == [False, True]  # the coin: no step, then a step
    assert [h["loss"] for h in res.history] == [h["loss"] for h in ref.history[2:]]
    a, b = model.trainable_state_dict(), model2.trainable_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_trainer_refuses_a_stream_dataset_without_the_configured_augment(tmp_path):
    cfg, model, data = _trainer(tmp_path, "augment.pasta.enabled=true")
    with pytest.raises(TrainingError, match="no augment"):
        Trainer(cfg, model, StreamDataset(data, cfg.seed))


# ================================================================================================ GTR-LTR
class _ChannelAdaIN(torch.nn.Module):
    """A stand-in 'style-transfer network' (TorchScript-able): content with the style's channel statistics."""

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        cm, cs = content.mean((2, 3), keepdim=True), content.std((2, 3), keepdim=True) + 1e-5
        sm, ss = style.mean((2, 3), keepdim=True), style.std((2, 3), keepdim=True)
        return ((content - cm) / cs * ss + sm).clamp(0, 1)


@pytest.fixture()
def style_setup(tmp_path):
    from PIL import Image

    styles = tmp_path / "styles"
    (styles / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(150, 255, (20, 30, 3), dtype=np.uint8)).save(styles / "a.png")
    Image.fromarray(rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)).save(styles / "sub" / "b.jpg")
    weights = tmp_path / "adain.pt2"  # torch.export program with dynamic H, W
    dim = torch.export.Dim
    ep = torch.export.export(
        _ChannelAdaIN(),
        (torch.rand(1, 3, 32, 40), torch.rand(1, 3, 16, 24)),
        dynamic_shapes=({2: dim("h", min=2), 3: dim("w", min=2)}, {2: dim("sh", min=2), 3: dim("sw", min=2)}),
    )
    torch.export.save(ep, str(weights))
    return styles, weights


def test_gtr_ltr_interface_global_and_local(style_setup):
    styles, weights = style_setup
    image = torch.randint(60, 200, (3, 32, 40), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    gtr = GtrLtr(styles, weights, global_prob=1.0, local_prob=0.0, style_size=16)
    assert [p.name for p in gtr.styles] == ["a.png", "b.jpg"]
    g = torch.Generator().manual_seed(4)
    out = gtr(image, g)
    g = torch.Generator().manual_seed(4)
    torch.rand((), generator=g)  # the draw order: u, then the style index
    style = int(torch.randint(0, 2, (), generator=g))
    want = (_ChannelAdaIN()(image[None].float() / 255, gtr.style_image(style))[0] * 255).to(torch.uint8)
    assert torch.equal(out, want) and not torch.equal(out, image)
    ltr = GtrLtr(styles, weights, global_prob=0.0, local_prob=1.0, num_regions=2, region_scale=(0.2, 0.4))
    out = ltr(image, torch.Generator().manual_seed(7))
    changed = (out != image).any(0)
    assert 0 < changed.float().mean() < 0.5  # only inside the local rectangles
    assert torch.equal(out, ltr(image, torch.Generator().manual_seed(7)))
    none = GtrLtr(styles, weights, global_prob=0.0, local_prob=0.0)
    assert torch.equal(none(image, torch.Generator().manual_seed(7)), image)


@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_gtr_ltr_takes_a_torchscript_network_too(style_setup, tmp_path):
    styles, weights = style_setup
    script = tmp_path / "adain.ts"
    torch.jit.script(_ChannelAdaIN()).save(str(script))
    image = torch.randint(60, 200, (3, 16, 20), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    a = GtrLtr(styles, script, global_prob=1.0, local_prob=0.0, style_size=16)(image, torch.Generator().manual_seed(2))
    b = GtrLtr(styles, weights, global_prob=1.0, local_prob=0.0, style_size=16)(image, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_gtr_ltr_missing_inputs_fail_clearly(style_setup, tmp_path):
    styles, weights = style_setup
    with pytest.raises(GtrLtrError, match=r"style_dir: folder not found: .*nowhere.*cannot be reproduced"):
        GtrLtr(tmp_path / "nowhere", weights)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GtrLtrError, match=r"style_dir: no images"):
        GtrLtr(tmp_path / "empty", weights)
    with pytest.raises(GtrLtrError, match=r"weights: file not found: .*missing\.pt"):
        GtrLtr(styles, tmp_path / "missing.pt")
    for name, kind in (("bad.pt", "TorchScript file"), ("bad.pt2", r"torch.export \(.pt2\) program")):
        (tmp_path / name).write_bytes(b"not a model")
        with pytest.raises(GtrLtrError, match=rf"weights: .*{name} is not a loadable {kind}"):
            GtrLtr(styles, tmp_path / name)
    cfg = load_config(
        TINY,
        [
            "augment.gtr_ltr.enabled=true",
            f"augment.gtr_ltr.style_dir={tmp_path / 'nowhere'}",
            f"augment.gtr_ltr.weights={weights}",
        ],
    )
    with pytest.raises(GtrLtrError, match="folder not found"):
        build_image_augment(cfg.augment)


# ================================================================================================ configs
def test_every_table_row_has_a_baseline_config_with_the_right_switches():
    root = TINY.parents[1] / "baselines"
    names = {p.stem for p in root.glob("*.yaml")}
    rows = [f"gta2citys_{m}_dinov2-l" for m in ("full", "freeze", "lora", "adaptformer", "vpt", "fada")]
    rows += [f"gta2citys_{m}-{a}_dinov2-l" for m in ("full", "freeze") for a in ("advstyle", "pasta", "gtr-ltr")]
    rows += [f"gta2citys_{m}_eva02-l" for m in ("full", "freeze", "lora", "adaptformer", "vpt", "fada")]
    rows += [
        f"gta2citys_{m}_{e}" for m in ("full", "freeze", "fada", "rein", "depthforge") for e in ("clip-l", "sam-h")
    ]
    rows += ["citys2acdc_fada_dinov2-l", "citys2bmg_fada_dinov2-l"]
    assert not set(rows) - names, sorted(set(rows) - names)
    for name in names:
        cfg = load_config(root / f"{name}.yaml")
        label = name.split("_")[1]
        method, _, aug = label.partition("-")
        assert cfg.model.method == method and cfg.model.preset == f"{method}-{name.split('_')[2]}"
        assert cfg.augment.pasta.enabled == (aug == "pasta") and cfg.augment.advstyle.enabled == (aug == "advstyle")
        assert cfg.augment.gtr_ltr.enabled == (aug == "gtr-ltr")
        if aug == "pasta":
            p = cfg.augment.pasta
            assert (p.alpha, p.beta, p.k, p.mode, p.prob) == (3.0, 0.25, 2.0, "prop", 1.0)
            assert not p.exact_frequency_grid
        if aug == "gtr-ltr":  # shipped paths are placeholders: building the pipeline says what is missing
            with pytest.raises(GtrLtrError, match="style_dir: folder not found.*cannot be reproduced"):
                build_image_augment(cfg.augment)
