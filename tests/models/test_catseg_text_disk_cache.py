"""CAT-Seg's text embeddings on disk (inference): the key hashes the trained text tower's tensors, so a training
step, another checkpoint or another vocabulary gives another key and a stale table cannot be read."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dgss.models.catseg import CATSeg, build_catseg

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("road", "bicycle, bike", "sky")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DGSS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "text_tables"


def encode(m: CATSeg) -> torch.Tensor:
    """The inference path (no gradient: cached)."""
    with torch.no_grad():
        return m.encode_text()


def tiny(seed: int = 0) -> CATSeg:
    torch.manual_seed(seed)
    m = build_catseg("catseg-tiny", class_names=NAMES)
    m.randomize_clip(seed)
    return m


def direct_embeddings(m: CATSeg) -> torch.Tensor:
    """E (T, 1, D) written out: the first synonym in the template, the text tower, unit norm."""
    from dgss.backbones.clip_text_trainable import tokenize

    prompts = [m.cfg.template.format(n.split(", ")[0]) for n in m.vocab]
    with torch.no_grad():
        return F.normalize(m.clip_text(tokenize(prompts, m.cfg.text.context_length)), dim=-1)[:, None]


def train_step(m: CATSeg) -> None:
    """One AdamW step of the BCE loss on a random batch: moves the text tower's W_q, W_v."""
    m.train()
    opt = torch.optim.AdamW(m.optimizer_groups(lr=1e-2, weight_decay=0.0))
    x = torch.randn(2, 3, 32, 32)
    target = torch.randint(0, len(m.vocab), (2, 32, 32))
    loss = m.training_loss()(m(x), target)["loss_bce"]  # logits resized to the labels inside
    loss.backward()
    opt.step()
    m.eval()


def test_key_follows_the_trained_text_weights_and_the_vocabulary():
    m = tiny()
    k0 = m.text_key()
    twin = tiny()  # other tensors in memory, same values: same key (content, not storage)
    assert twin.text_key() == k0
    text_before = {n: p.detach().clone() for n, p in m.clip_text.named_parameters()}
    train_step(m)
    moved = [n for n, p in m.clip_text.named_parameters() if not torch.equal(p, text_before[n])]
    assert moved and all("q_proj" in n or "v_proj" in n for n in moved)  # only the trained q / v moved
    k1 = m.text_key()
    assert k1 != k0
    twin.load_state_dict(m.state_dict())  # the trained weights loaded elsewhere: that key again
    assert twin.text_key() == k1
    twin.set_vocabulary(["road", "sky", "bicycle, bike"])
    assert twin.text_key() != k1
    other = tiny(seed=1)  # other CLIP towers, same vocabulary
    assert other.text_key() != k0


def test_disk_cache_is_reused_for_equal_weights_and_never_stale(own_cache):
    m = tiny().eval()
    m.disk_text_cache = True
    e0 = encode(m)
    assert torch.allclose(e0, direct_embeddings(m), atol=1e-6)
    files = sorted(own_cache.glob("emb-*.safetensors"))
    assert len(files) == 1 and m.text_key() in files[0].name

    twin = tiny().eval()  # equal weights in another model: read from disk, the tower never runs
    twin.disk_text_cache = True
    calls = []
    twin.clip_text.register_forward_hook(lambda *a: calls.append(1))
    assert torch.equal(encode(twin), e0) and not calls

    train_step(twin)  # the trained text tower moved: a new key, encoded again, equal to the tower now
    e1 = encode(twin)
    assert calls  # the tower ran
    assert torch.allclose(e1, direct_embeddings(twin), atol=1e-6)
    assert not torch.allclose(e1, e0, atol=1e-4)
    assert len(list(own_cache.glob("emb-*.safetensors"))) == 2


def test_a_damaged_cache_file_is_recomputed(own_cache):
    m = tiny().eval()
    m.disk_text_cache = True
    e0 = encode(m)
    (path,) = own_cache.glob("emb-*.safetensors")
    path.write_bytes(b"not safetensors")
    again = tiny().eval()
    again.disk_text_cache = True
    assert torch.equal(encode(again), e0)


def test_loaded_checkpoints_cache_on_disk_and_training_models_do_not(tmp_path, own_cache):
    from dgss.models.checkpoint import load_checkpoint, save_checkpoint

    m = tiny()
    with torch.no_grad():
        m.eval().encode_text()
    assert not own_cache.exists()  # a model being trained keeps its cache in memory only
    loaded = load_checkpoint(save_checkpoint(m, tmp_path / "c.safetensors"), random_frozen=True).eval()
    assert loaded.disk_text_cache
    with torch.no_grad():
        e = loaded.encode_text()
    assert (own_cache / f"emb-{loaded.text_key()}.safetensors").is_file()
    assert torch.allclose(e, direct_embeddings(m), atol=1e-6)
