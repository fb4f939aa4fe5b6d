import random

import numpy as np
import pytest
import torch

from dgss.engine import checkpointing as ck
from dgss.models.checkpoint import load_checkpoint
from dgss.testing import tiny_segmentor


def _state(opt):
    return {"optimizer": opt.state_dict(), "samples_consumed": 8, "global_batch": 4, "rng": [ck.rng_state()]}


def test_train_state_is_weights_only_loadable_and_weights_load_alone(tmp_path):
    model = tiny_segmentor("rein")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model(torch.randn(1, 3, 64, 64))["pred_logits"].sum().backward()
    opt.step()
    files = ck.save_training_checkpoint(tmp_path, model, 7, _state(opt), run_config={"name": "x"})
    assert files.weights.name == "iter_000007.safetensors" and files.state.name == "iter_000007.train_state.pt"
    state = torch.load(files.state, weights_only=True)
    assert state["iteration"] == 7 and state["optimizer"]["state"]
    again = load_checkpoint(files.weights, random_frozen=True)
    for k, v in model.trainable_state_dict().items():
        assert torch.equal(again.trainable_state_dict()[k], v)
    assert not any(k.startswith("encoder.") for k in again.trainable_state_dict())  # slim: no frozen weights


def test_keep_last_k_and_incomplete_checkpoints(tmp_path):
    model = tiny_segmentor("rein")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for it in (2, 4, 6, 8):
        ck.save_training_checkpoint(tmp_path, model, it, _state(opt), keep_last=2)
    assert [c.iteration for c in ck.list_checkpoints(tmp_path)] == [6, 8]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "iter_000006.safetensors",
        "iter_000006.train_state.pt",
        "iter_000008.safetensors",
        "iter_000008.train_state.pt",
    ]
    # a kill between the weights write and the train-state write leaves weights only: not a checkpoint
    from dgss.models.checkpoint import save_checkpoint

    save_checkpoint(model, tmp_path / "iter_000010.safetensors", iteration=10)
    (tmp_path / ".iter_000010.train_state.pt.abc.tmp").write_bytes(b"partial")
    assert ck.latest_checkpoint(tmp_path).iteration == 8
    assert ck.resolve_resume(True, tmp_path).iteration == 8
    with pytest.raises(ck.ResumeError, match="missing"):
        ck.resolve_resume(tmp_path / "iter_000010.safetensors", tmp_path)
    ck.remove_stale_temp_files(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ck.ResumeError, match="nothing to resume"):
        ck.resolve_resume(True, tmp_path / "empty")


def test_rng_roundtrip():
    gen = torch.Generator().manual_seed(5)
    torch.rand(3), np.random.rand(2), random.random(), torch.rand(2, generator=gen)
    state = ck.rng_state(gen)
    state = torch.load(_save(state), weights_only=True)
    a = (torch.rand(4), np.random.rand(4), random.random(), torch.rand(4, generator=gen))
    torch.manual_seed(0), np.random.seed(0), random.seed(0), gen.manual_seed(0)
    ck.set_rng_state(state, gen)
    b = (torch.rand(4), np.random.rand(4), random.random(), torch.rand(4, generator=gen))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] and torch.equal(a[3], b[3])


def _save(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_resume_refuses_another_model(tmp_path):
    model = tiny_segmentor("rein")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    files = ck.save_training_checkpoint(tmp_path, model, 3, _state(opt))
    other = tiny_segmentor("rein", num_tokens=12)
    with pytest.raises(ck.ResumeError, match="another model config"):
        ck.load_training_checkpoint(files, other)
