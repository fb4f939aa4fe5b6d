"""Every shipped run config validates and builds (meta device); config errors name the offending key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dgss.config import config_from_dict, load_config, segmentor_config_from
from dgss.engine.optim import build_optimizer
from dgss.engine.schedulers import LRSchedule
from dgss.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "dgss" / "configs"
ALL = sorted(CONFIGS.rglob("*.yaml"))
TINY = CONFIGS / "tiny" / "rein_synthetic.yaml"


def test_configs_exist_for_every_setting():
    names = {p.relative_to(CONFIGS).as_posix() for p in ALL}
    for method in ("rein", "depthforge", "vireo"):
        for setting in ("gta2citys", "citys2acdc", "citys2bmg"):
            assert f"{method}/{setting}_{method}_dinov2-l.yaml" in names
    for src in ("citys", "gta"):
        for ov in ("deliver", "ade150", "ade847"):
            assert f"vireo/{src}2{ov}_vireo_dinov2-l.yaml" in names


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_validates_and_notes_anchors(path):
    cfg = load_config(path)
    assert cfg.name == (f"tiny_{path.stem}" if path.parent.name == "tiny" else path.stem)
    text = path.read_text()
    if path.parent.name != "tiny":
        assert "Anchors" in text or "Anchor" in text, "paper configs note their anchor numbers"
    # round trip: the resolved config is a valid config again
    assert config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_builds_on_meta_device(path):
    cfg = load_config(path)
    from dgss.models.build import build_model

    seg_cfg = segmentor_config_from(cfg.model)
    with torch.device("meta"):
        model = build_model(seg_cfg)
        opt = build_optimizer(model, cfg.optim)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    in_opt = [p for g in opt.param_groups for p in g["params"]]
    assert {id(p) for p in in_opt} == trainable and len(in_opt) == len(trainable)
    sched = LRSchedule.from_config(cfg.schedule, cfg.optim.lr, cfg.train.max_iters)
    assert sched.lr_at(0) > 0 and sched.lr_at(cfg.train.max_iters - 1) < cfg.optim.lr
    assert seg_cfg.crop_size == cfg.data.train.crop_size


def test_paper_recipes():
    rein = load_config(CONFIGS / "rein/gta2citys_rein_dinov2-l.yaml")
    assert (rein.data.train.batch_size, rein.train.max_iters, rein.schedule.type) == (4, 40000, "poly")
    assert rein.optim.lr == 1e-4 and rein.optim.weight_decay == 0.05 and rein.train.grad_clip is None
    df_gta = load_config(CONFIGS / "depthforge/gta2citys_depthforge_dinov2-l.yaml")
    df_cs = load_config(CONFIGS / "depthforge/citys2acdc_depthforge_dinov2-l.yaml")
    assert (df_gta.data.train.batch_size, df_gta.train.max_iters, df_gta.schedule.type) == (5, 50000, "onecycle")
    assert df_cs.train.max_iters == 40000
    v_cs = load_config(CONFIGS / "vireo/citys2acdc_vireo_dinov2-l.yaml")
    v_gta = load_config(CONFIGS / "vireo/gta2citys_vireo_dinov2-l.yaml")
    assert v_cs.train.grad_clip == 0.1 and v_gta.train.grad_clip is None
    assert load_config(CONFIGS / "vireo/citys2deliver_vireo_dinov2-l.yaml").data.mean_over == [
        "deliver/sun",
        "deliver/night",
        "deliver/cloud",
        "deliver/rain",
        "deliver/fog",
    ]
    acdc = load_config(CONFIGS / "rein/citys2acdc_rein_dinov2-l.yaml")
    assert acdc.data.mean_over == ["acdc/snow", "acdc/night", "acdc/fog", "acdc/rain"]
    r1024 = load_config(CONFIGS / "rein/citys2acdc_rein_dinov2-l_1024.yaml")
    seg = segmentor_config_from(r1024.model)
    assert (seg.encoder.img_size, seg.crop_size, seg.slide_stride) == (1024, 1024, 683)
    assert r1024.schedule.type == "warmup_poly" and r1024.schedule.warmup_iters == 10000


def test_typo_key_fails_with_its_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("  weight_decay: 0.05", "  weight_decai: 0.05"))
    with pytest.raises(ConfigError, match=r"optim\.weight_decai.*did you mean 'optim\.weight_decay'"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"'trian'"):
        load_config(TINY, ["trian.max_iters=3"])
    with pytest.raises(ConfigError, match=r"data\.val\.0\.splt"):
        load_config(TINY, ["data.val.0.splt=val"])
    with pytest.raises(ConfigError, match=r"model\.overrides\.adaptor"):
        segmentor_config_from(load_config(TINY, ["model.overrides={adaptor: {rank: 2}}"]).model)


def test_wrong_types_fail_with_key_and_type():
    with pytest.raises(ConfigError, match=r"'train\.max_iters'.*integer.*'ten'"):
        load_config(TINY, ["train.max_iters=ten"])
    with pytest.raises(ConfigError, match=r"'logging\.tensorboard'.*true/false"):
        load_config(TINY, ["logging.tensorboard=3"])
    with pytest.raises(ConfigError, match=r"'schedule\.type'.*'poly'.*'linear'"):
        load_config(TINY, ["schedule.type=linear"])
    with pytest.raises(ConfigError, match=r"'optim\.betas'"):
        load_config(TINY, ["optim.betas=[0.9]"])
    with pytest.raises(ConfigError, match=r"'name' is required"):
        config_from_dict({"seed": 1})


def test_overrides_and_cross_field_checks():
    cfg = load_config(TINY, ["optim.lr=2e-4", "train.grad_clip=0.5", "data.val=[]", "train.max_iters=7"])
    assert cfg.optim.lr == 2e-4 and cfg.train.grad_clip == 0.5 and cfg.data.val == [] and cfg.train.max_iters == 7
    with pytest.raises(ConfigError, match="model.preset"):
        load_config(TINY, ["model.tiny=false"])
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config(TINY, ["model.tiny=false", "model.preset=rein-dinov4-l"])
    with pytest.raises(ConfigError, match="model.ablation"):
        load_config(TINY, ["model.ablation=drd"])  # rein has no ablation rows
    with pytest.raises(ConfigError, match="unknown dataset 'cityscape'"):
        load_config(TINY, ["data.train.dataset=cityscape"])
    with pytest.raises(ConfigError, match="unknown condition"):
        load_config(TINY, ["data.val=[{dataset: acdc, conditions: [sunny]}]"])
    with pytest.raises(ConfigError, match="only open-vocabulary"):
        load_config(TINY, ["data.val=[{dataset: deliver, split: test}]"])
    with pytest.raises(ConfigError, match="warmup_iters"):
        load_config(TINY, ["schedule.type=warmup_poly"])
    ab = load_config(TINY, ["model.method=depthforge", "model.ablation=drd"])
    assert segmentor_config_from(ab.model).head_refine == "aag"


def test_depthforge_ablation_rows_build_on_meta():
    cfg = load_config(CONFIGS / "depthforge/citys2acdc_depthforge_dinov2-l.yaml", ["model.ablation=rein"])
    seg = segmentor_config_from(cfg.model)
    assert seg.adapter.depth_fusion == "none" and seg.depth_encoder is None and seg.head_refine == "none"


def test_tiny_vireo_trains_with_prior_loss_and_reloads(tmp_path):
    from dgss.cli import main
    from dgss.engine.logging import read_jsonl
    from dgss.models.checkpoint import load_checkpoint

    work = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(CONFIGS / "tiny/vireo_synthetic.yaml"),
                "train.max_iters=4",
                "train.ckpt_interval=4",
                "--work-dir",
                str(work),
            ]
        )
        == 0
    )
    rows = read_jsonl(work / "log.jsonl")  # {iteration: train record}
    assert sorted(rows) == [1, 2, 3, 4] and all(r["loss_prior"] > 0 for r in rows.values())
    model = load_checkpoint(work / "iter_000004.safetensors", random_frozen=True)
    assert model.vocab[0] == "road" and model.num_classes == 19


def test_packaged_configs_by_name_list_show_and_train(capsys, tmp_path):
    """`dgss configs list/show` print the configs that ship in the package; `dgss train NAME` takes a packaged
    name (stem or group/stem) as well as a path; an unknown name gets one line with close matches."""
    from dgss.cli import main
    from dgss.config import find_configs, packaged_config

    shipped = sorted(CONFIGS.rglob("*.yaml"))
    assert sorted(find_configs().values()) == shipped
    assert main(["configs", "list", "acdc"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "/" in line.split(" ")[0]]
    assert listed == sorted(f"{p.parent.name}/{p.stem}" for p in shipped if "acdc" in p.stem)
    assert main(["configs", "show", "rein/gta2citys_rein_dinov2-l"]) == 0
    assert capsys.readouterr().out == (CONFIGS / "rein" / "gta2citys_rein_dinov2-l.yaml").read_text()
    assert packaged_config("rein_synthetic") == CONFIGS / "tiny" / "rein_synthetic.yaml"
    assert main(["train", "rein_synthetic", "--print-config", "--work-dir", str(tmp_path / "w")]) == 0
    assert "name: tiny_rein_synthetic" in capsys.readouterr().out
    assert main(["train", "gta2citys_rein_dinov2_l"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not the name of a packaged config" in err and "gta2citys_rein_dinov2-l" in err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found:" in capsys.readouterr().err
