"""SoMA (docs/methods/soma.md): published counts, exactness at init, minor-component selection, the qkv
split, training, the eval cache, merged export and the reference-checkpoint import. Re-derivations are
written here (numpy / plain torch), never taken from the adapter."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from dgss.adapters.soma import SoMAAdapter
from dgss.backbones.weights import load_encoder_weights
from dgss.backbones.zoo import ENCODERS
from dgss.cli import main
from dgss.commands.convert import import_reference
from dgss.errors import AdapterInitError, FrozenWeightsError, ReferenceFormatError
from dgss.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from dgss.models.presets import build_preset
from dgss.models.reference import soma_to_reference
from dgss.testing import tiny_segmentor

R = 4  # tiny rank (alpha = rank: s = 1)


def _tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return tiny_segmentor("soma", **kw)


def _initialised(seed=0, **kw):
    m = _tiny(seed, **kw)
    m.initialize_adapter(seed=seed)
    return m


# ---------------------------------------------------------------------------------------------- 1 counts
def test_counts_dinov2_l_on_meta_device():
    with torch.device("meta"):
        soma, freeze = build_preset("soma-dinov2-l"), build_preset("freeze-dinov2-l")
    ad = soma.adapter
    factors = sum(p.numel() for n, p in ad.named_parameters() if "lora_" in n)
    biases = sum(p.numel() for n, p in ad.named_parameters() if n.endswith("bias"))
    assert factors == 16 * 4 * 16 * (1024 + 1024) + 16 * 2 * 16 * (1024 + 4096) == 4_718_592
    assert biases == 16 * (3072 + 1024 + 4096 + 1024) == 147_456
    assert sum(p.numel() for p in ad.parameters() if p.requires_grad) == 4_866_048
    assert sum(b.numel() for b in ad.buffers()) == 4_718_592  # init_A / init_B: buffers, not parameters
    assert sorted(ad.blocks, key=int) == [str(i) for i in range(8, 24)]
    trainable = sum(p.numel() for p in soma.parameters() if p.requires_grad)
    assert trainable == 25_431_252 == 4_866_048 + sum(p.numel() for p in freeze.parameters() if p.requires_grad)
    assert sum(p.numel() for p in soma.encoder.parameters()) == 304_199_680
    assert not any(p.requires_grad for p in soma.encoder.parameters())
    blk = dict(ad.blocks["8"].named_parameters())
    assert blk["attn.qkv.lora_A"].shape == (3, 16, 1024) and blk["attn.qkv.lora_B"].shape == (3, 1024, 16)
    assert blk["mlp.fc1.lora_B"].shape == (1, 4096, 16) and blk["mlp.fc2.lora_A"].shape == (1, 16, 4096)
    assert blk["attn.qkv.bias"].shape == (3072,)


@pytest.mark.skipif("dinov3-l" not in ENCODERS, reason="no DINOv3 in the zoo")
def test_counts_dinov3_l_without_k_bias():
    with torch.device("meta"):
        m = build_preset("soma-dinov3-l")
    assert sum(p.numel() for p in m.adapter.parameters() if p.requires_grad) == 4_718_592 + 131_072 == 4_849_664
    names = dict(m.adapter.blocks["8"].named_parameters())
    assert "attn.qkv.q_bias" in names and "attn.qkv.v_bias" in names and "attn.qkv.k_bias" not in names


# ---------------------------------------------------------------------------------------------- 2 exact at init
@pytest.mark.parametrize("train", [False, True])
def test_pretrained_minor_at_init_is_the_frozen_model_bit_for_bit(train):
    soma = _initialised()
    freeze = tiny_segmentor("freeze")
    freeze.encoder.load_state_dict(soma.encoder.state_dict())
    freeze.head.load_state_dict(soma.head.state_dict())
    soma.train(train), freeze.train(train)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2
    with torch.set_grad_enabled(train):
        fa, fb = soma.extract_features(x), freeze.extract_features(x)
        assert all(torch.equal(a, b) for a, b in zip(fa, fb, strict=True))
        if not train:
            oa, ob = soma(x), freeze(x)
            assert torch.equal(oa["pred_logits"], ob["pred_logits"]) and torch.equal(oa["pred_masks"], ob["pred_masks"])
    # the factors are not zero: exactness comes from the init snapshot, not from an empty adapter
    assert soma.adapter.target(1, "mlp.fc1").lora_B.abs().max() > 0


# ---------------------------------------------------------------------------------------------- 3 minor selection
def _blocks(W, n):
    return np.split(W.detach().double().numpy(), n, axis=0)


@pytest.mark.parametrize("mode", ["pretrained_minor", "pretrained_major"])
def test_minor_and_major_selection(mode):
    from dgss.backbones.weights import mark_random
    from dgss.models.segmentor import Segmentor
    from dgss.models.tiny import tiny_segmentor_config

    cfg = tiny_segmentor_config("soma")
    cfg.adapter = type(cfg.adapter)(**{**cfg.adapter.__dict__, "init": mode})
    torch.manual_seed(0)
    m = Segmentor(cfg)
    mark_random(m.encoder, seed=0)
    m.initialize_adapter()
    for layer in cfg.adapter.layers:
        for target in cfg.adapter.targets:
            t = m.adapter.target(layer, target)
            W = m.encoder.blocks[layer].get_submodule(target).weight
            n = t.lora_A.shape[0]
            for j, Wj in enumerate(_blocks(W, n)):
                BA = t.init_B[j].double().numpy() @ t.init_A[j].double().numpy()
                sw = np.linalg.svd(Wj, compute_uv=False)
                res = np.linalg.svd(Wj - BA, compute_uv=False)
                k = sw.shape[0]
                if mode == "pretrained_minor":
                    assert np.all(np.sort(res)[:R] <= 1e-6 * sw[0])
                    np.testing.assert_allclose(np.sort(res)[::-1][: k - R], sw[: k - R], rtol=1e-6)
                    np.testing.assert_allclose(np.linalg.norm(BA, 2), sw[k - R], rtol=1e-6)
                else:
                    np.testing.assert_allclose(np.linalg.norm(BA, 2), sw[0], rtol=1e-6)
                assert torch.equal(t.lora_A, t.init_A) and torch.equal(t.lora_B, t.init_B)


# ---------------------------------------------------------------------------------------------- 4 qkv split
def test_fused_qkv_is_three_separate_inits():
    m = _initialised()
    W = m.encoder.blocks[2].attn.qkv.weight.detach().double().numpy()
    t = m.adapter.target(2, "attn.qkv")
    got = np.concatenate([t.init_B[j].double().numpy() @ t.init_A[j].double().numpy() for j in range(3)])
    want = []
    for Wj in np.split(W, 3):  # the reference's separate q, k, v Linears
        U, S, Vh = np.linalg.svd(Wj, full_matrices=False)
        want.append(U[:, -R:] @ np.diag(S[-R:]) @ Vh[-R:])
    want = np.concatenate(want)
    np.testing.assert_allclose(got, want, atol=1e-6 * np.abs(want).max())
    U, S, Vh = np.linalg.svd(W, full_matrices=False)  # one SVD of the fused matrix is something else
    assert np.abs(U[:, -R:] @ np.diag(S[-R:]) @ Vh[-R:] - want).max() > 0.1 * np.abs(want).max()


# ---------------------------------------------------------------------------------------------- order one
def test_update_formula_at_order_one():
    """float64, every factor, snapshot, bias and W ~ U(-1, 1): the block equals one whose weights are the
    re-derived W' = W + s·(B A − B0 A0) (row blocks stacked) and whose biases are the copies."""
    m = _initialised().double()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in list(m.adapter.parameters()) + list(m.adapter.buffers()) + list(m.encoder.parameters()):
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1)
    m.cfg.adapter = type(m.cfg.adapter)(**{**m.cfg.adapter.__dict__, "alpha": 2.5 * R})  # s = 2.5
    m.adapter.cfg = m.cfg.adapter
    s = 2.5
    layer = 2
    ref_enc = copy.deepcopy(m.encoder)
    blk = ref_enc.blocks[layer]
    wrong = {}
    with torch.no_grad():
        for target in m.cfg.adapter.targets:
            t = m.adapter.target(layer, target)
            lin = blk.get_submodule(target)
            d = [t.lora_B[j] @ t.lora_A[j] - t.init_B[j] @ t.init_A[j] for j in range(t.lora_A.shape[0])]
            lin.weight.copy_(lin.weight + s * torch.cat(d))
            lin.bias.copy_(t.bias)
    x = torch.rand(2, 17, 64, generator=gen, dtype=torch.float64) * 2 - 1
    state = m.encoder.embed(torch.zeros(1, 3, 64, 64, dtype=torch.float64))[1]
    m.eval()
    with torch.no_grad():
        got = m.adapter.run_block(m.encoder, layer, x, state)
        want = ref_enc.forward_block(layer, x, state)
        frozen = m.encoder.forward_block(layer, x, state)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    wrong["no update"] = frozen
    m.adapter.cfg = type(m.cfg.adapter)(**{**m.cfg.adapter.__dict__, "alpha": float(R)})  # s = 1 instead of 2.5
    m.adapter.invalidate_cache()
    with torch.no_grad():
        wrong["scale"] = m.adapter.run_block(m.encoder, layer, x, state)
    for what, w in wrong.items():
        assert float((w - want).norm() / want.norm()) > 1e-2, what


# ---------------------------------------------------------------------------------------------- 5 one step
def test_one_training_step_moves_only_the_adapter():
    m = _initialised().train()
    frozen = {k: v.clone() for k, v in m.encoder.state_dict().items()}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = m(x)
    (out["pred_logits"].square().mean() + out["pred_masks"].square().mean()).backward()
    t = m.adapter.target(1, "attn.qkv")
    assert t.lora_A.grad is not None and t.lora_A.grad.abs().max() > 0
    assert t.bias.grad is not None and t.bias.grad.abs().max() > 0
    assert m.adapter.target(1, "mlp.fc2").bias.grad.abs().max() > 0
    assert t.init_A.grad is None and not t.init_A.requires_grad
    assert "0" not in m.adapter.blocks  # block 0 < start_block = 1: no adapter parameters
    opt.step()
    assert all(torch.equal(v, frozen[k]) for k, v in m.encoder.state_dict().items())


def test_uninitialised_adapter_refuses_to_train_and_import_mode_refuses_svd():
    m = _tiny().train()
    with pytest.raises(AdapterInitError, match="never initialised"):
        m(torch.zeros(1, 3, 64, 64))
    with pytest.raises(AdapterInitError, match="never initialised"):
        m.check_adapter_initialized()
    m.adapter.cfg = type(m.cfg.adapter)(**{**m.cfg.adapter.__dict__, "init": "import"})
    with pytest.raises(AdapterInitError, match="dgss convert"):
        m.adapter.initialize_from(m.encoder)


def test_reference_mode_uses_a_random_linear_and_no_snapshot():
    from dgss.backbones.weights import mark_random
    from dgss.models.segmentor import Segmentor
    from dgss.models.tiny import tiny_segmentor_config

    cfg = tiny_segmentor_config("soma")
    cfg.adapter = type(cfg.adapter)(**{**cfg.adapter.__dict__, "init": "reference"})
    m = Segmentor(cfg)
    mark_random(m.encoder, seed=0)
    m.initialize_adapter(seed=7)
    gen = torch.Generator().manual_seed(7)  # the draw order: layer, target, row block
    for layer in cfg.adapter.layers:
        for target in cfg.adapter.targets:
            t = m.adapter.target(layer, target)
            assert not t.init_A.any() and not t.init_B.any()
            for j in range(t.lora_A.shape[0]):
                out_j, fan_in = t.lora_B.shape[1], t.lora_A.shape[2]
                Wr = (torch.rand(out_j, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(fan_in)
                S = np.linalg.svd(Wr.numpy(), compute_uv=False)
                BA = (t.lora_B[j] @ t.lora_A[j]).detach().double().numpy()
                got = np.linalg.svd(BA, compute_uv=False)
                np.testing.assert_allclose(got[:R], S[-R:], rtol=1e-5)


# ---------------------------------------------------------------------------------------------- 6 eval cache, export
def test_eval_cache_equals_w_plus_delta_and_is_invalidated():
    m = _initialised()
    with torch.no_grad():
        for p in m.adapter.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    m.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a = m(x)["pred_logits"]
    lin = m.encoder.blocks[2].mlp.fc1
    cached = {(id(mod), attr): v for mod, attr, v in m.adapter._cache[2][1]}
    t = m.adapter.target(2, "mlp.fc1")
    want = lin.weight + (t.lora_B[0] @ t.lora_A[0] - t.init_B[0] @ t.init_A[0])
    torch.testing.assert_close(cached[(id(lin), "weight")], want.detach(), rtol=0, atol=1e-6)
    assert cached[(id(lin), "bias")] is not None and torch.equal(cached[(id(lin), "bias")], t.bias.detach())
    m.train()
    assert not m.adapter._cache  # train() drops the cache
    m.eval()
    with torch.no_grad():
        m(x)
    assert m.adapter._cache
    with torch.no_grad():
        again = m(x)["pred_logits"]  # from the cache
        t.lora_B.add_(1.0)  # an in-place change (EMA swap, optimiser) is seen too
        b = m(x)["pred_logits"]
    assert torch.equal(a, again) and not torch.equal(a, b)
    m.load_state_dict(m.state_dict())
    assert not m.adapter._cache  # so does load_state_dict


def test_export_merged_reproduces_the_adapter_model(tmp_path):
    m = _initialised()
    with torch.no_grad():
        for p in m.adapter.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    ckpt = save_checkpoint(m, tmp_path / "soma.safetensors")
    out = tmp_path / "merged.safetensors"
    assert main(["export", str(ckpt), str(out), "--merged", "--random-weights"]) == 0
    plain = tiny_segmentor("freeze").eval()
    load_encoder_weights(plain.encoder, out)
    plain.head.load_state_dict(m.head.state_dict())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want, got = m.eval()(x), plain(x)
    torch.testing.assert_close(got["pred_logits"], want["pred_logits"], rtol=0, atol=1e-5)
    torch.testing.assert_close(got["pred_masks"], want["pred_masks"], rtol=0, atol=1e-5)
    assert not torch.equal(plain.encoder.blocks[2].mlp.fc1.weight, m.encoder.blocks[2].mlp.fc1.weight)


# ---------------------------------------------------------------------------------------------- 7 import
def _released(m):
    """A released-layout file built from a dgss model (import mode: no snapshot), EMA + raw as the release."""
    sd = {k: v.clone() for k, v in m.trainable_state_dict().items()}
    for k in sd:
        if k.endswith(("init_A", "init_B")):
            sd[k].zero_()
    ref = soma_to_reference(sd, m.cfg.adapter)
    C = m.cfg.encoder.embed_dim
    vit = m.encoder.vit.state_dict()
    for l in range(m.cfg.adapter.start_block):  # frozen tensors the extract filter keeps
        for j, part in enumerate("qkv"):
            ref[f"backbone.model.blocks.{l}.attn.{part}.bias"] = vit[f"blocks.{l}.attn.qkv.bias"][j * C : (j + 1) * C]
    for name in ("blocks.0.norm1.bias", "blocks.3.norm2.bias", "norm.bias", "patch_embed.proj.bias", "mask_token"):
        ref["backbone.model." + name] = vit[name].clone()
    return sd, ref


def test_reference_import_round_trip_and_frozen_checks(tmp_path):
    m = _initialised()
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(9)))
    sd, ref = _released(m)
    assert "backbone.model.blocks.2.attn.k.lora_A.weight" in ref and "backbone.model.blocks.2.attn.v.bias" in ref
    raw = {"module." + k: v + 1 if ".lora_" in k else v for k, v in ref.items()}  # frozen tensors stay
    torch.save({"state_dict": ref, "ema_state_dict": {**raw, "steps": torch.tensor(5)}}, tmp_path / "soma_best.pth")
    enc = tmp_path / "encoder.pth"
    torch.save(m.encoder.vit.state_dict(), enc)
    cfg_file = tmp_path / "tiny.yaml"
    import json

    import yaml

    cfg_file.write_text(yaml.safe_dump(json.loads(json.dumps(m.cfg.to_dict()))))
    out = import_reference(tmp_path / "soma_best.pth", tmp_path / "imported.safetensors", str(cfg_file), str(enc))
    tensors, meta = read_checkpoint(out)
    assert meta["config"]["adapter"]["init"] == "import"
    assert set(tensors) == set(sd) and all(torch.equal(tensors[k], sd[k]) for k in sd), "bit for bit"
    back = soma_to_reference(tensors, m.cfg.adapter)
    assert all(torch.equal(back[k], ref[k]) for k in back)
    loaded = load_checkpoint(out, frozen_weights={"encoder": str(enc)})
    assert loaded.adapter.initialized
    raw_out = tmp_path / "raw.safetensors"  # through the CLI: --raw takes the ema_state_dict
    args = ["--model", str(cfg_file), "--encoder-weights", str(enc), "--raw"]
    assert main(["convert", str(tmp_path / "soma_best.pth"), str(raw_out), *args]) == 0
    k = "adapter.blocks.2.attn.qkv.lora_A"
    assert torch.equal(read_checkpoint(raw_out)[0][k], sd[k] + 1)
    assert main(["convert", str(out), str(tmp_path / "back.pth"), "--to", "reference"]) == 0
    exported = torch.load(tmp_path / "back.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(exported[k], ref[k]) for k in exported) and set(exported) < set(ref)
    # wrong frozen biases: refused by name
    bad = dict(ref)
    bad["backbone.model.blocks.0.norm1.bias"] = ref["backbone.model.blocks.0.norm1.bias"] + 1e-3
    torch.save({"state_dict": bad}, tmp_path / "bad.pth")
    with pytest.raises(FrozenWeightsError, match=r"bad\.pth.*blocks\.0\.norm1\.bias.*--encoder-weights"):
        import_reference(tmp_path / "bad.pth", tmp_path / "x.safetensors", str(cfg_file), str(enc))
    # a file for another encoder width: one line naming the file and the fix
    wide = _initialised(embed_dim=96)
    _, ref96 = _released(wide)
    torch.save({"state_dict": ref96}, tmp_path / "wide.pth")
    with pytest.raises(ReferenceFormatError, match=r"wide\.pth is a SoMA file for another encoder.*--model soma-"):
        import_reference(tmp_path / "wide.pth", tmp_path / "y.safetensors", str(cfg_file), str(enc))


def test_export_to_reference_refuses_a_snapshot(tmp_path):
    m = _initialised()
    with pytest.raises(ReferenceFormatError, match="--merged"):
        soma_to_reference(m.trainable_state_dict(), m.cfg.adapter)


def test_run_config_with_random_frozen_weights_initialises_from_them():
    """The demo / comparison path: tiny SoMA, random frozen weights (marked), SVD of those weights."""
    from dgss.config import config_from_dict
    from dgss.engine.trainer import build_model

    cfg = config_from_dict({"name": "t", "model": {"method": "soma", "tiny": True}, "weights": {"random": True}})
    m = build_model(cfg)
    assert isinstance(m.adapter, SoMAAdapter) and m.adapter.initialized
    assert m.adapter.init_record["frozen_random_seed"] == 0 and m.adapter.init_record["mode"] == "pretrained_minor"
    t = m.adapter.target(1, "attn.proj")
    W = m.encoder.blocks[1].attn.proj.weight.detach().double().numpy()
    S = np.linalg.svd(W, compute_uv=False)
    np.testing.assert_allclose(np.linalg.norm((t.init_B[0] @ t.init_A[0]).double().numpy(), 2), S[-R], rtol=1e-6)


def test_params_prints_both_counts(capsys):
    assert main(["params", "soma-dinov2-l"]) == 0
    out = capsys.readouterr().out
    assert "dgss 4,866,048; reference rule 4,867,072 (+1,024 mask_token)" in out
    assert "25,431,252" in out and "init_A/init_B (not parameters): 4,718,592" in out


@pytest.mark.skipif("dinov3-s" not in ENCODERS, reason="no DINOv3 in the zoo")
def test_dinov3_attention_biases_substitute_and_init_is_exact():
    """DINOv3's attention keeps q/v biases itself (no k bias) and reads qkv.weight functionally."""
    soma, freeze = _tiny(encoder="dinov3-s"), tiny_segmentor("freeze", encoder="dinov3-s")
    with torch.no_grad():
        for p in soma.encoder.parameters():
            if p.ndim == 1:  # order-one biases and norms (the random init leaves biases at 0)
                p.uniform_(-1, 1, generator=torch.Generator().manual_seed(p.numel()))
    freeze.encoder.load_state_dict(soma.encoder.state_dict())
    freeze.head.load_state_dict(soma.head.state_dict())
    soma.initialize_adapter()
    t = soma.adapter.target(1, "attn.qkv")
    assert torch.equal(t.q_bias, soma.encoder.blocks[1].attn.q_bias) and not hasattr(t, "k_bias")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    soma.eval(), freeze.eval()
    with torch.no_grad():
        a, b = soma.extract_features(x), freeze.extract_features(x)
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
        t.v_bias.add_(1.0)
        c = soma.extract_features(x)
    assert not torch.equal(c[-1], a[-1])


def test_shipped_recipes_and_parameter_groups():
    """The release's recipe (docs/methods/soma.md): groups by the longest-key rule on the real-size model."""
    from pathlib import Path

    from dgss.config import load_config, segmentor_config_from
    from dgss.engine.optim import assign_params
    from dgss.models.build import build_model

    root = Path(__file__).resolve().parents[2] / "src" / "dgss" / "configs" / "soma"
    g2c = load_config(root / "gta2citys_soma_dinov2-l.yaml")
    c2bm = load_config(root / "citys2bm_soma_dinov2-l.yaml")
    acdc = load_config(root / "citys2acdc_soma_dinov2-l_1024.yaml")
    assert (g2c.data.train.batch_size, c2bm.data.train.batch_size, acdc.data.train.batch_size) == (4, 8, 2)
    assert (g2c.ema.begin_iter, c2bm.ema.begin_iter, acdc.ema.begin_iter) == (12000, 20000, 20000)
    assert all(c.ema.enabled and c.ema.momentum == 2e-4 and c.data.protocol == "soma" for c in (g2c, c2bm, acdc))
    assert (g2c.schedule.type, c2bm.schedule.warmup_iters, acdc.schedule.warmup_iters) == ("poly", 1500, 10000)
    wd = g2c.optim.weight_decay_schedule
    assert (wd.type, wd.eta_min, wd.include_zero_groups) == ("cosine", 1e-5, True)
    assert segmentor_config_from(acdc.model).encoder.img_size == 1024
    with torch.device("meta"):
        model = build_model(segmentor_config_from(g2c.model))
    rules = {a.name: (a.lr_mult, a.decay_mult) for a in assign_params(model, g2c.optim.param_rules)}
    adapter = {k: v for k, v in rules.items() if k.startswith("adapter.")}
    assert len(adapter) == 16 * 4 * 3 and set(adapter.values()) == {(0.5, 1.0)}  # factors and bias copies
    for k in ("head.query_embed.weight", "head.query_feat.weight", "head.level_embed.weight"):
        assert rules[k] == (1.0, 0.0), k
    assert all(v == (1.0, 0.0) for k, v in rules.items() if "norm" in k and not k.startswith("adapter."))


def test_minor_alignment_diagnostic():
    """1 for factors from the loaded W's minor components; near chance (r / in) for the reference mode's
    random minor components (the check to run on a released file)."""
    from dgss.backbones.weights import mark_random
    from dgss.models.segmentor import Segmentor
    from dgss.models.tiny import tiny_segmentor_config

    m = _initialised()
    got = m.adapter.minor_alignment(m.encoder)
    assert len(got) == 3 * 6 and all(abs(v - 1) < 1e-6 for v in got.values())
    cfg = tiny_segmentor_config("soma")
    cfg.adapter = type(cfg.adapter)(**{**cfg.adapter.__dict__, "init": "reference"})
    ref = Segmentor(cfg)
    mark_random(ref.encoder, seed=0)
    ref.initialize_adapter(seed=3)
    vals = list(ref.adapter.minor_alignment(ref.encoder).values())
    assert sum(vals) / len(vals) < 0.25  # chance: r / in = 4/64 (q, k, v, proj, fc1) and 4/256 (fc2)
