"""FADA (``baselines.md`` §1): exact counts, the per-block update and query link at order one against a
re-derivation written here from §1.3-1.4, both Haar-kernel modes, reference keys, window errors, overfit.

The re-derivation follows the spec's general form literally: token-major rows, the flat buffer cut into
w×w images, each filtered with the 2×2 kernels of channel (image index mod C) by an explicit sum over the
four kernel entries (no conv), the two REIN-style branches with the instance-normalised high-branch logits.
"""

from __future__ import annotations

import io
import math
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from order_one import SENSITIVE, TOL, assert_sensitive, linear, order_one_, query_link_ref, randn, rel, softmax
from overfit import load_generated_scene, majority_share, overfit

from dgss.adapters.fada import FADAAdapter, FADAConfig
from dgss.cli import main as cli_main
from dgss.config import OptimConfig
from dgss.engine.optim import assign_params
from dgss.errors import FADAWindowError
from dgss.models.param_report import count
from dgss.models.presets import PRESETS, build_preset, preset_config, segmentor_config
from dgss.models.reference import detect_method, from_reference, to_reference
from dgss.models.segmentor import Segmentor
from dgss.testing import tiny_segmentor, tiny_segmentor_config
from learning import learning_seed, record_margin, step_margin

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch thread

C = 32  # width of the standalone adapter tests: c = 8; N = 16 tokens (w = 4, 2w = 8 | 32)
HAAR = {
    "LL": [[0.5, 0.5], [0.5, 0.5]],
    "LH": [[-0.5, 0.5], [-0.5, 0.5]],
    "HL": [[-0.5, -0.5], [0.5, 0.5]],
    "HH": [[0.5, -0.5], [-0.5, 0.5]],
}  # baselines.md §1.2 table


# ------------------------------------------------------------------------------------------ helpers
def adapter(seed=0, perturb_haar=True, **kw) -> FADAAdapter:
    cfg = dict(num_layers=3, embed_dim=C, num_tokens=7, rank=4, query_dim=6)
    return order_one_(FADAAdapter(FADAConfig(**{**cfg, **kw})), seed, perturb_haar=perturb_haar)


def kernels_of(ad):
    """(C, 2, 2) kernel of every channel per band, as the module holds them."""
    return {s: getattr(ad.wavepool, s).weight[:, 0] for s in HAAR}


def tokens_of(ad, layer):
    if ad.cfg.rank is None:
        return ad.learnable_tokens[layer], ad.learnable_tokens2[layer]
    return ad.learnable_tokens_a[layer] @ ad.learnable_tokens_b[layer], ad.learnable_tokens_a2[
        layer
    ] @ ad.learnable_tokens_b2[layer]


def subbands_general(X, K, w, *, batch=None):
    """§1.3 steps 1-2: flat buffer of X (R, C) -> images of N = w·w values; image P uses kernel P mod C."""
    R, Cx = X.shape
    imgs = X.reshape(-1).reshape(R * Cx // (w * w), w, w)
    n_img = imgs.shape[0]
    blocks = imgs.reshape(n_img, w // 2, 2, w // 2, 2)  # [P, p, di, q, dj]
    idx = torch.arange(n_img) % Cx
    return {s: torch.einsum("Ppaqb,Pab->Ppq", blocks, K[s][idx]).reshape(R, Cx // 4) for s in K}


def subbands_per_token(X, w):
    """§1.3 per-token reading (exact kernels): each row laid out as a (C/w)×w grid, 2×2 Haar, row-major."""
    G = X.reshape(X.shape[0], -1, w)
    p00, p01, p10, p11 = G[:, 0::2, 0::2], G[:, 0::2, 1::2], G[:, 1::2, 0::2], G[:, 1::2, 1::2]
    bands = {
        "LL": p00 + p01 + p10 + p11,
        "LH": -p00 + p01 - p10 + p11,
        "HL": -p00 - p01 + p10 + p11,
        "HH": p00 - p01 - p10 + p11,
    }
    return {s: (v / 2).reshape(X.shape[0], -1) for s, v in bands.items()}


def fada_ref(
    x,
    layer,
    ad,
    *,
    K=None,
    per_token=False,
    tau=None,
    inorm="biased",
    order=("LH", "HL", "HH"),
    batch_major=False,
    high_first=False,
    discard=None,
    softmax_on=None,
):
    """baselines.md §1.3, written out. Keyword arguments produce the plausible wrong variants."""
    B, N, Cx = x.shape
    w = math.isqrt(N)
    discard = ad.cfg.discard_first_token if discard is None else discard
    softmax_on = ad.cfg.use_softmax if softmax_on is None else softmax_on
    X = x.reshape(B * N, Cx) if batch_major else torch.stack([x[b, n] for n in range(N) for b in range(B)])
    sub = subbands_per_token(X, w) if per_token else subbands_general(X, K or kernels_of(ad), w)
    T1, T2 = tokens_of(ad, layer)
    tau = (1 / math.sqrt(Cx),) * 2 if tau is None else tau

    def branch(F_, T, t2f, dlt, t, normalise):
        Z = F_ @ T.T
        if normalise and inorm:
            m = Z.mean(-1, keepdim=True)
            d = (Z - m).square().sum(-1, keepdim=True) / (Z.shape[-1] - (inorm == "unbiased"))
            Z = (Z - m) / torch.sqrt(d + 1e-5)
        S = softmax(Z * t) if softmax_on else Z
        V = linear(T, t2f)
        agg = S[:, 1:] @ V[1:] if discard else S @ V
        return linear(agg + F_, dlt)

    d_low = branch(sub["LL"], T1, ad.mlp_token2feat, ad.mlp_delta_f, tau[0], False)
    Fs = torch.cat([sub[o] for o in order], -1)
    d_high = branch(
        Fs, T2, ad.mlp_token2feat2, ad.mlp_delta_f2, tau[1], ad.cfg.high_branch_norm == "logits_instance_norm"
    )
    Y = X + ad.scale * (torch.cat([d_high, d_low], -1) if high_first else torch.cat([d_low, d_high], -1))
    if batch_major:
        return Y.reshape(B, N, Cx)
    out = torch.empty_like(x)
    for n in range(N):
        for b in range(B):
            out[b, n] = Y[n * B + b]
    return out


# ------------------------------------------------------------------------------------------ per-block update
@pytest.mark.parametrize("haar", ["trainable", "fixed"])
def test_fada_update_at_order_one_in_both_kernel_modes(haar):
    ad = adapter(haar=haar)
    if haar == "fixed":
        assert not any(n.startswith("wavepool") for n, _ in ad.named_parameters())
        assert not any(k.startswith("wavepool") for k in ad.state_dict())
        assert all(
            torch.equal(kernels_of(ad)[s], torch.tensor(HAAR[s], dtype=torch.float64).expand(C, 2, 2)) for s in HAAR
        )
    else:  # trained kernels: parameters, saved, and here perturbed per channel
        assert {n for n, _ in ad.named_parameters() if n.startswith("wavepool")} == {
            f"wavepool.{s}.weight" for s in HAAR
        }
        assert rel(kernels_of(ad)["LL"], torch.full((C, 2, 2), 0.5, dtype=torch.float64)) > 0.1
    x = randn(2, 16, C, seed=3)
    all_tokens = ad.all_tokens()
    with torch.no_grad():
        for layer in range(3):
            ref = fada_ref(x, layer, ad)
            torch.testing.assert_close(ad.update(x, layer, all_tokens, grid=(4, 4)), ref, **TOL)
        sq = (1 / math.sqrt(C // 4), 1 / math.sqrt(3 * C // 4))
        wrong = dict(
            no_instance_norm=fada_ref(x, 2, ad, inorm=None),
            tau_of_the_branch_width=fada_ref(x, 2, ad, tau=sq),
            subband_order=fada_ref(x, 2, ad, order=("HL", "LH", "HH")),
            high_branch_first=fada_ref(x, 2, ad, high_first=True),
            no_discard=fada_ref(x, 2, ad, discard=False),
            wrong_layer_tokens=fada_ref(x, 1, ad),
        )
        if haar == "trainable":
            wrong["batch_major_rows"] = fada_ref(x, 2, ad, batch_major=True)
        assert_sensitive(ref, **wrong)


@pytest.mark.parametrize(
    "switch",
    [
        dict(rank=None),
        dict(use_softmax=False),
        dict(high_branch_norm="none"),
        dict(discard_first_token=False),
        dict(scale="fixed_one"),
    ],
    ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()),
)
def test_fada_switches_at_order_one(switch):
    ad = adapter(seed=2, **switch)
    if switch.get("scale") == "fixed_one":
        assert float(ad.scale) == 1.0 and "scale" not in ad.state_dict()
    x = randn(2, 16, C, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(ad.update(x, 1, ad.all_tokens(), grid=(4, 4)), fada_ref(x, 1, ad), **TOL)


def test_fada_exact_kernels_are_the_per_token_channel_grid_haar():
    """§1.3 per-token reading: with exact kernels every token's channel vector is a (C/w)×w grid."""
    ad = adapter(seed=5, haar="fixed")
    x = randn(3, 16, C, seed=6)
    with torch.no_grad():
        ref = fada_ref(x, 0, ad, per_token=True)
        torch.testing.assert_close(ad.update(x, 0, ad.all_tokens(), grid=(4, 4)), ref, **TOL)
        torch.testing.assert_close(fada_ref(x, 0, ad), ref, **TOL)  # general form agrees with exact kernels


def test_fada_trained_kernels_depend_on_the_batch_size():
    """The kernel of token n of image b is (n·B + b) mod C: a reference defect, reproduced."""
    x = randn(2, 16, C, seed=7)
    with torch.no_grad():
        ad = adapter(seed=8)
        alone, batched = ad.update(x[:1], 0, ad.all_tokens()), ad.update(x, 0, ad.all_tokens())[:1]
        torch.testing.assert_close(alone, fada_ref(x[:1], 0, ad), **TOL)
        assert rel(alone, batched) > SENSITIVE
        fixed = adapter(seed=8, haar="fixed")
        torch.testing.assert_close(
            fixed.update(x[:1], 0, fixed.all_tokens()), fixed.update(x, 0, fixed.all_tokens())[:1], **TOL
        )


# ------------------------------------------------------------------------------------------ query link
def test_fada_query_link_from_the_low_frequency_tokens_at_order_one():
    ad = adapter(seed=9)
    with torch.no_grad():
        low = ad.learnable_tokens_a @ ad.learnable_tokens_b
        ref = query_link_ref(low, ad)
        torch.testing.assert_close(ad.query_embed(), ref, **TOL)
        t = linear(low, ad.transform)
        assert_sensitive(
            ref,
            block_order=linear(torch.cat([t.max(0).values, t.mean(0), t[-1]], -1), ad.merge),
            layers_reversed=query_link_ref(low.flip(0), ad),
        )


def test_fada_segmentor_block_loop_and_query_link_at_order_one():
    """The segmentor runs the update after every block on the patch tokens with the real grid, taps after
    it, and hands the linked queries to the stock REIN-style head."""
    torch.manual_seed(0)
    m = tiny_segmentor("fada").eval()
    order_one_(m.adapter)
    m.double()
    assert m.cfg.head.query_source == "link"
    x = randn(2, 3, 64, 64, seed=10)
    enc, ad = m.encoder, m.adapter
    with torch.no_grad():
        t, state = enc.embed(x)
        P, (h, w) = enc.num_prefix_tokens, state.grid
        maps = []
        for i in range(enc.depth):
            t = enc.forward_block(i, t, state)
            t = torch.cat([t[:, :P], fada_ref(t[:, P:], i, ad)], 1)
            if i in m.cfg.taps:
                maps.append(t[:, P:].transpose(1, 2).reshape(2, -1, h, w))
        ref = [
            torch.nn.functional.interpolate(mp, scale_factor=s, mode="bilinear", align_corners=False)
            for mp, s in zip(maps, (4.0, 2.0, 1.0, 0.5), strict=False)
        ]
        for g, r in zip(m.extract_features(x), ref, strict=True):
            torch.testing.assert_close(g, r, **TOL)
        torch.testing.assert_close(
            m.query_embed(), query_link_ref(ad.learnable_tokens_a @ ad.learnable_tokens_b, ad), **TOL
        )


# ------------------------------------------------------------------------------------------ counts
FADA_VIT_L = 2_061_825
FADA_SAM_H = 3_107_841
REIN_HEAD = 20_579_796


@pytest.mark.parametrize(
    "name,expected,head",
    [
        ("fada-dinov2-l", FADA_VIT_L, REIN_HEAD),
        ("fada-eva02-l", FADA_VIT_L, REIN_HEAD),
        ("fada-clip-l", FADA_VIT_L, REIN_HEAD),
        ("fada-sam-h", FADA_SAM_H, 20_841_940),
    ],
)
def test_fada_preset_counts_on_meta(name, expected, head):
    assert name in PRESETS
    with torch.device("meta"):
        m = build_preset(name)
    assert count(m.adapter).trainable == count(m.adapter).total == expected
    assert count(m.head).trainable == head and m.cfg.head.query_source == "link"
    assert count(m.encoder).trainable == 0


def test_fada_count_per_module_and_switches():
    """baselines.md §1.7 table, module by module (ViT-L), Haar fixed, full tokens, SAM-H Haar fixed."""
    with torch.device("meta"):
        m = build_preset("fada-dinov2-l")
        per = {n: p.numel() for n, p in m.adapter.named_parameters()}
        fixed = Segmentor(segmentor_config("fada", preset_config("fada-dinov2-l").encoder, haar="fixed"))
        full = Segmentor(segmentor_config("fada", preset_config("fada-dinov2-l").encoder, rank=None))
        sam_fixed = Segmentor(segmentor_config("fada", preset_config("fada-sam-h").encoder, haar="fixed"))
    assert per == {
        "learnable_tokens_a": 38_400,
        "learnable_tokens_b": 98_304,
        "learnable_tokens_a2": 38_400,
        "learnable_tokens_b2": 294_912,
        "scale": 1,
        "mlp_token2feat.weight": 65_536,
        "mlp_token2feat.bias": 256,
        "mlp_delta_f.weight": 65_536,
        "mlp_delta_f.bias": 256,
        "mlp_token2feat2.weight": 589_824,
        "mlp_token2feat2.bias": 768,
        "mlp_delta_f2.weight": 589_824,
        "mlp_delta_f2.bias": 768,
        **{f"wavepool.{s}.weight": 4096 for s in HAAR},
        "transform.weight": 65_536,
        "transform.bias": 256,
        "merge.weight": 196_608,
        "merge.bias": 256,
    }
    assert sum(per.values()) == FADA_VIT_L
    assert count(fixed.adapter).trainable == 2_045_441
    assert count(full.adapter).trainable == 4_049_409
    assert count(sam_fixed.adapter).trainable == 3_087_361


def test_dgss_params_prints_the_code_count_the_published_numbers_and_why():
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli_main(["params", "fada-dinov2-l"]) == 0
    out = buf.getvalue()
    assert "2,061,825" in out and "11.65M" in out and "16.59M" in out
    why = [line for line in out.splitlines() if line.startswith("why they differ")]
    assert len(why) == 1 and "released" in why[0]


def test_fada_optimizer_groups_as_the_reference():
    """§1.5: no decay for the four token tensors and the scale; MLPs, transform, merge and Haar kernels decay."""
    got = {a.name: a.decay_mult for a in assign_params(tiny_segmentor("fada"), OptimConfig().param_rules)}
    for n in ("learnable_tokens_a", "learnable_tokens_b", "learnable_tokens_a2", "learnable_tokens_b2", "scale"):
        assert got[f"adapter.{n}"] == 0.0
    for n in ("mlp_token2feat2.weight", "mlp_delta_f.bias", "wavepool.HH.weight", "transform.weight", "merge.bias"):
        assert got[f"adapter.{n}"] == 1.0


# ------------------------------------------------------------------------------------------ reference keys
def test_fada_reference_keys_round_trip():
    with torch.device("meta"):
        m = build_preset("fada-dinov2-l")
    ref = to_reference(m.trainable_state_dict(), "fada")
    adapter_keys = {k[len("backbone.reins.") :] for k in ref if k.startswith("backbone.reins.")}
    assert adapter_keys == {  # baselines.md §1.2 names
        "learnable_tokens_a",
        "learnable_tokens_b",
        "learnable_tokens_a2",
        "learnable_tokens_b2",
        "scale",
        *(
            f"{mlp}.{p}"
            for mlp in ("mlp_token2feat", "mlp_delta_f", "mlp_token2feat2", "mlp_delta_f2", "transform", "merge")
            for p in ("weight", "bias")
        ),
        *(f"wavepool.{s}.weight" for s in HAAR),
    }
    assert all(k.startswith(("backbone.reins.", "decode_head.")) for k in ref)
    assert "decode_head.querys2feat.weight" in ref and ref["backbone.reins.wavepool.LL.weight"].shape == (1024, 1, 2, 2)
    tiny = tiny_segmentor("fada")
    sd = tiny.trainable_state_dict()
    ref = to_reference(sd, "fada")
    assert detect_method(ref) == "fada"
    back = from_reference(ref)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    rein_ref = to_reference(tiny_segmentor("rein").trainable_state_dict(), "rein")
    assert detect_method(rein_ref) == "rein"
    fixed = to_reference(tiny_segmentor("fada", haar="fixed").trainable_state_dict(), "fada")
    assert detect_method(fixed) == "fada" and not any("wavepool" in k for k in fixed)


# ------------------------------------------------------------------------------------------ windows
@pytest.mark.parametrize("size,why", [((64, 128), "not square"), ((96, 96), "does not divide"), ((48, 48), "odd")])
def test_fada_window_it_cannot_handle_names_the_window(size, why):
    m = tiny_segmentor("fada").eval()  # C = 64: 2w | 64 needs w in {2, 4, 8, 16, 32}
    with pytest.raises(FADAWindowError, match=f"{size[0]}x{size[1]} window.*{why}"), torch.no_grad():
        m.extract_features(torch.zeros(1, 3, *size))


def test_fada_crop_it_cannot_handle_fails_at_config_time_and_sliding_windows_handle_any_image():
    with pytest.raises(ValueError, match="96x96 crop"):
        tiny_segmentor_config("fada", img_size=96)
    m = tiny_segmentor("fada").eval()
    with torch.no_grad():
        scores = m.slide_inference(torch.zeros(1, 3, 64, 128))  # square 64x64 windows of a wide image
    assert scores.shape == (1, 19, 64, 128)


def test_fada_sam_h_kernel_bank_at_c_channels():
    with torch.device("meta"):
        m = build_preset("fada-sam-h")
    assert m.adapter.wavepool.LL.weight.shape == (1280, 1, 2, 2)


# ------------------------------------------------------------------------------------------ overfit
@pytest.mark.learning
def test_tiny_fada_overfits_a_generated_scene_with_frozen_weights_unchanged():
    """Worst margin (share of the step budget left at 90% accuracy; the margin sweep in docs/testing.md: 5 seeds x 5 settings, AVX2 EPYC):
    0.42 (threads-1, seed 2; 25/25 runs cleared)."""
    image, label = load_generated_scene(0, 128, 128)
    assert majority_share(label) < 0.75
    torch.manual_seed(learning_seed())
    model = tiny_segmentor("fada", img_size=128)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    tokens = model.adapter.learnable_tokens_a2.detach().clone()
    kernels = model.adapter.wavepool.HL.weight.detach().clone()
    losses, acc, steps = overfit(model, image, label, max_steps=300, lr=3e-3, seed=learning_seed())
    record_margin("overfit-fada", step_margin(acc, steps, 300, 0.9), unit="share of steps left", acc=acc, steps=steps)
    assert acc >= 0.90, f"pixel accuracy {acc:.3f} after {steps} steps"
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert all(torch.equal(v, frozen[k]) for k, v in model.encoder.state_dict().items())
    assert not torch.equal(model.adapter.learnable_tokens_a2[0], tokens[0])  # block-0 high-branch tokens learned
    assert not torch.equal(model.adapter.wavepool.HL.weight, kernels)  # the Haar kernels train
