"""Reference (mmengine) checkpoints <-> dgss checkpoints, and the dgss checkpoint guards."""

import json

import pytest
import torch
import yaml

from dgss.cli import main
from dgss.commands.convert import export_reference, import_reference
from dgss.errors import CheckpointError, FrozenWeightsError
from dgss.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from dgss.models.reference import to_reference
from dgss.testing import tiny_segmentor

# rein.md §2 / weights.md §5: the adapter keys of a REIN reference checkpoint
REIN_ADAPTER_KEYS = {
    "learnable_tokens_a",
    "learnable_tokens_b",
    "scale",
    "mlp_token2feat.weight",
    "mlp_token2feat.bias",
    "mlp_delta_f.weight",
    "mlp_delta_f.bias",
    "transform.weight",
    "transform.bias",
    "merge.weight",
    "merge.bias",
}


def randomized_tiny(seed=0):
    torch.manual_seed(seed)
    m = tiny_segmentor("rein").eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
    return m


def write_config(tmp_path, model):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(json.loads(json.dumps(model.cfg.to_dict()))))
    return p


def write_encoder(tmp_path, model):
    p = tmp_path / "encoder.pth"
    torch.save(model.encoder.vit.state_dict(), p)
    return p


def test_reference_import_gives_same_outputs_as_native(tmp_path):
    native = randomized_tiny()
    ref = {"meta": {"note": "synthetic"}, "state_dict": to_reference(native.trainable_state_dict(), "rein")}
    assert {k[len("backbone.reins.") :] for k in ref["state_dict"] if k.startswith("backbone.")} == REIN_ADAPTER_KEYS
    assert all(k.startswith(("backbone.reins.", "decode_head.")) for k in ref["state_dict"])
    torch.save(ref, tmp_path / "iter_40000_published.pth")
    cfg_file, enc_file = write_config(tmp_path, native), write_encoder(tmp_path, native)
    rc = main(
        [
            "convert",
            str(tmp_path / "iter_40000_published.pth"),
            str(tmp_path / "rein.safetensors"),
            "--model",
            str(cfg_file),
            "--encoder-weights",
            str(enc_file),
        ]
    )
    assert rc == 0
    loaded = load_checkpoint(tmp_path / "rein.safetensors").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = native(x), loaded(x)
    torch.testing.assert_close(a["pred_logits"], b["pred_logits"], rtol=0, atol=0)
    torch.testing.assert_close(a["pred_masks"], b["pred_masks"], rtol=0, atol=0)


def test_export_round_trip(tmp_path):
    native = randomized_tiny(1)
    save_checkpoint(native, tmp_path / "m.safetensors")
    assert main(["convert", str(tmp_path / "m.safetensors"), str(tmp_path / "ref.pth"), "--to", "reference"]) == 0
    ref = torch.load(tmp_path / "ref.pth", weights_only=True)
    assert "dgss_version" in ref["meta"]
    import_reference(tmp_path / "ref.pth", tmp_path / "back.safetensors", str(write_config(tmp_path, native)))
    t1, _ = read_checkpoint(tmp_path / "m.safetensors")
    t2, _ = read_checkpoint(tmp_path / "back.safetensors")
    assert t1.keys() == t2.keys() and all(torch.equal(t1[k], t2[k]) for k in t1)
    export_reference(tmp_path / "back.safetensors", tmp_path / "ref2.pth")
    ref2 = torch.load(tmp_path / "ref2.pth", weights_only=True)
    assert all(torch.equal(ref["state_dict"][k], ref2["state_dict"][k]) for k in ref["state_dict"])


def test_checkpoint_holds_only_trained_weights(tmp_path):
    m = randomized_tiny()
    save_checkpoint(m, tmp_path / "m.safetensors", iteration=7)
    tensors, meta = read_checkpoint(tmp_path / "m.safetensors")
    assert all(k.startswith(("adapter.", "head.")) for k in tensors)
    assert meta["format"] == "dgss/1" and meta["iteration"] == 7 and meta["frozen_sources"]["encoder"]["random"]


def test_guards(tmp_path):
    m = randomized_tiny()
    save_checkpoint(m, tmp_path / "m.safetensors")
    with pytest.raises(FrozenWeightsError, match="random"):
        load_checkpoint(tmp_path / "m.safetensors")  # trained on random frozen weights
    enc = write_encoder(tmp_path, m)
    from dgss.backbones import load_encoder_weights

    load_encoder_weights(m.encoder, enc)
    save_checkpoint(m, tmp_path / "real.safetensors")
    other = tmp_path / "other.pth"
    sd = torch.load(enc, weights_only=True)
    sd["cls_token"] = sd["cls_token"] + 1
    torch.save(sd, other)
    with pytest.raises(FrozenWeightsError, match="SHA-256"):
        load_checkpoint(tmp_path / "real.safetensors", frozen_weights={"encoder": str(other)})
    load_checkpoint(
        tmp_path / "real.safetensors", frozen_weights={"encoder": str(other)}, allow_frozen_hash_mismatch=True
    )
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a dgss checkpoint"):
        read_checkpoint(tmp_path / "bad.safetensors")


def test_mismatched_reference_checkpoint_names_keys(tmp_path, capsys):
    native = randomized_tiny()
    sd = to_reference(native.trainable_state_dict(), "rein")
    sd["backbone.reins.learnable_tokens_b"] = torch.zeros(4, 4, 4)
    sd["backbone.other.x"] = torch.zeros(1)
    torch.save({"state_dict": sd}, tmp_path / "ref.pth")
    rc = main(
        [
            "convert",
            str(tmp_path / "ref.pth"),
            str(tmp_path / "o.safetensors"),
            "--model",
            str(write_config(tmp_path, native)),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "backbone.other.x" in err and "Traceback" not in err
    del sd["backbone.other.x"]
    torch.save({"state_dict": sd}, tmp_path / "ref.pth")
    assert (
        main(
            [
                "convert",
                str(tmp_path / "ref.pth"),
                str(tmp_path / "o.safetensors"),
                "--model",
                str(write_config(tmp_path, native)),
            ]
        )
        == 2
    )
    assert "learnable_tokens_b" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()
