"""Derive the state-dict key names and shapes of REIN / DepthForge / Vireo reference checkpoints
from the original projects' sources, independently of dgss (issue 11).

Writes ``tests/fixtures/reference_keys/{decode_head,backbone}_{rein,depthforge,vireo}.txt``: one
``name<TAB>shape`` line per key (shape = comma-separated dims, ``()`` for a 0-d tensor), sorted,
after ``#`` comment lines that name the sources. Nothing here imports dgss.

How to run (the decode-head groups need the OpenMMLab packages, in a venv of their own):

    python3 -m venv /tmp/mmvenv
    /tmp/mmvenv/bin/pip install torch==2.14.1 numpy mmengine==0.10.7 mmcv-lite==2.1.0 \
        scipy shapely terminaltables pycocotools prettytable ftfy regex matplotlib six tqdm
    /tmp/mmvenv/bin/pip install --no-deps mmdet==3.3.0 mmsegmentation==1.2.2
    /tmp/mmvenv/bin/python tools/reference_keys/derive_reference_keys.py --out tests/fixtures/reference_keys

(``mmcv-lite`` is mmcv 2.1.0 without compiled ops. ``mmcv/ops/multi_scale_deform_attn.py`` is still
shipped; only its import-time ``ext_loader.load_ext`` call needs the missing ``mmcv._ext``. The script
replaces ``load_ext`` by a stub whose functions raise if called, so mmcv's *own*
``MultiScaleDeformableAttention.__init__`` builds the modules: no hand-written stand-in.)
``--adapters-only`` writes only the ``backbone_*.txt`` files and needs nothing but Python.

Where each group comes from:

* ``decode_head.*`` stock part: instantiated, not transcribed. mmseg 1.2.2
  ``mmseg/models/decode_heads/mask2former_head.py`` ``Mask2FormerHead`` (the parent class that all
  three reference heads import; it replaces mmdet's ``cls_embed`` by ``Linear(feat, num_classes+1)``)
  over mmdet 3.3.0 ``mmdet/models/dense_heads/mask2former_head.py`` ``Mask2FormerHead``,
  ``mmdet/models/layers/msdeformattn_pixel_decoder.py`` ``MSDeformAttnPixelDecoder``,
  ``mmdet/models/layers/transformer/mask2former_layers.py`` ``Mask2FormerTransformerDecoder``,
  ``mmdet/models/layers/transformer/deformable_detr_layers.py``
  ``DeformableDetrTransformerEncoder``, mmcv 2.1.0 ``mmcv/ops/multi_scale_deform_attn.py``
  ``MultiScaleDeformableAttention``, ``mmcv/cnn/bricks/transformer.py`` ``MultiheadAttention`` /
  ``FFN``. Config: ``decode_head`` of w1oves/Rein ``configs/_base_/models/rein_dinov2_mask2former.py``
  (commit 29755d4, l.42ff); the DepthForge (``configs/_base_/models/depthforge_dinov2_mask2former.py``,
  commit 15d4ee3) and Vireo (``configs/_base_/models/vireo_dinov2_mask2former.py``, commit 5f2180f)
  configs have the same values for every constructor argument used below (checked by reading).
* ``decode_head.*`` method-specific edits (``query_embed``/``query_feat`` removed, ``querys2feat``,
  ``vpt_transforms``, ``DQCM``, Vireo's ``cls_embed``/``feat_conv``/``out_conv``/``prior``): explicit
  code below, each with the file / class / line it was read from.
* ``backbone.*``: explicit code below (adapter classes ``LoRAReins``, ``DepthForgeReins``,
  ``VireoReins``). The reference backbones override ``state_dict`` to drop every key that does not
  contain the adapter attribute name (w1oves/Rein ``rein/models/backbones/reins_dinov2.py``
  ``ReinsDinoVisionTransformer.state_dict``; DepthForge ``depthforge/models/backbones/depth_dinov2.py``
  ``DepthForgeDinoVisionTransformer.state_dict``; Vireo ``vireo/models/backbones/vireo_dinov2.py``
  ``VireoDinoVisionTransformer.state_dict``), so a trained checkpoint holds only the adapter keys.

Repositories and stored commits read (names and shapes only; no code is copied):
w1oves/Rein @ 29755d4a (GPL-3.0); anonymouse-xzrptkvyqc/DepthForge @ 2f787da9 (adapter, head),
15d4ee35 (backbone, config); anonymouse-9c53tp182bvz/Vireo @ 728df25d (adapter, backbone, head),
5f2180f7 (config). Line numbers below refer to those versions.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

Shape = tuple[int, ...]
Keys = dict[str, Shape]

# ViT-L/16 reference configuration: backbone ``*_config`` dicts of the three configs
# (Rein configs/_base_/models/rein_dinov2_mask2former.py l.16-24: LoRAReins, token_length=100,
# embed_dims=1024, num_layers=24, patch_size=16, link_token_to_query=True, lora_dim=16; DepthForge and
# Vireo configs: the same numbers for DepthForgeReins / VireoReins). query_dims is not set in the
# configs, so the class default 256 applies (Reins.__init__ signature, reins.py l.18).
NUM_LAYERS, EMBED, TOKENS, RANK, QUERY_DIMS = 24, 1024, 100, 16, 256
FEAT = 256  # decode_head feat_channels
NUM_CLASSES = 19  # configs: num_classes = 19 (l.2)
NUM_QUERIES = 100  # decode_head num_queries
CLIP_DIM = 768  # CLIP ViT-L/14@336px text width (Vireo: Linear(768, ...) / class_embed_dim=768)
# Vireo head: prompt_ensemble_type="imagenet" in the config -> third_party IMAGENET_TEMPLATES
# (vireo_mask2former.py l.75-76). That third_party file is not in the stored index; it is the CAT-Seg
# file (cvlab-kaist/CAT-Seg cat_seg/third_party/imagenet_templates.py, which also defines the
# IMAGENET_TEMPLATES_SELECT_CLIP list that Vireo's backbone uses), whose IMAGENET_TEMPLATES has 80
# entries (CLIP's ImageNet prompt set).
NUM_HEAD_TEMPLATES = 80


def linear(name: str, fan_in: int, fan_out: int, bias: bool = True) -> Keys:
    """torch.nn.Linear(fan_in, fan_out): weight (out, in), bias (out,)."""
    d = {f"{name}.weight": (fan_out, fan_in)}
    if bias:
        d[f"{name}.bias"] = (fan_out,)
    return d


def conv2d(name: str, c_in: int, c_out: int, k: int, bias: bool = True) -> Keys:
    """torch.nn.Conv2d(c_in, c_out, k): weight (out, in, k, k), bias (out,)."""
    d = {f"{name}.weight": (c_out, c_in, k, k)}
    if bias:
        d[f"{name}.bias"] = (c_out,)
    return d


# ----------------------------------------------------------------------------------------------
# backbone.<adapter>.*
# ----------------------------------------------------------------------------------------------


def lora_reins_core() -> Keys:
    """Parameters shared by LoRAReins / DepthForgeReins / VireoReins (without the state-dict prefix)."""
    d: Keys = {}
    # Rein rein/models/backbones/reins.py class Reins.create_model (l.37-54); DepthForge
    # depthforge/models/backbones/depthforge.py class DepthForge.create_model (l.39-56); Vireo
    # vireo/models/backbones/vireo.py class Vireo.create_model (l.82-99): identical names/shapes.
    # Line numbers in this block: Rein reins.py.
    #   learnable_tokens (num_layers, token_length, embed_dims) is created (l.38), then deleted by the
    #   LoRA subclass (LoRAReins.create_model l.127), so it is not in the state dict.
    d["scale"] = ()  # Parameter(tensor(scale_init)), 0-d (l.41)
    d.update(linear("mlp_token2feat", EMBED, EMBED))  # Linear(embed_dims, embed_dims) (l.42)
    d.update(linear("mlp_delta_f", EMBED, EMBED))  # Linear(embed_dims, embed_dims) (l.43)
    d.update(linear("transform", EMBED, QUERY_DIMS))  # Linear(embed_dims, query_dims) (l.53)
    d.update(linear("merge", 3 * QUERY_DIMS, QUERY_DIMS))  # Linear(query_dims * 3, query_dims) (l.54)
    # zero_mlp_delta_f=False (default, not set in the configs): `scale` stays a Parameter (l.55-59).
    # reins.py class LoRAReins.create_model (l.125-133); DepthForge class DepthForgeReins.create_model
    # and Vireo class VireoReins.create_model: the same two parameters.
    d["learnable_tokens_a"] = (NUM_LAYERS, TOKENS, RANK)  # (num_layers, token_length, lora_dim)
    d["learnable_tokens_b"] = (NUM_LAYERS, RANK, EMBED)  # (num_layers, lora_dim, embed_dims)
    return d


def adapter_keys(method: str) -> Keys:
    d = lora_reins_core()
    if method == "vireo":
        # vireo.py class Vireo.create_model l.106-108: fusion_weights = ParameterList of num_layers 0-d
        # Parameters (init 0.5) -> keys fusion_weights.0 .. fusion_weights.23.
        for i in range(NUM_LAYERS):
            d[f"fusion_weights.{i}"] = ()
        # vireo.py class Vireo.__init__ l.80: text_embed = Linear(768, embed_dims).
        d.update(linear("text_embed", CLIP_DIM, EMBED))
        # vireo.py l.74-78: text_features is a plain tensor attribute (not a buffer): not in the state dict.
        # The CLIP model from clip.load (l.50) is a local variable: not a submodule.
    # DepthForge adds no adapter weights (depthforge.py: DepthForge.create_model == Reins.create_model).
    prefix = {"rein": "backbone.reins.", "depthforge": "backbone.depthforge.", "vireo": "backbone.vireo."}[method]
    # Attribute names: reins_dinov2.py ReinsDinoVisionTransformer.__init__ `self.reins`;
    # depth_dinov2.py DepthForgeDinoVisionTransformer.__init__ `self.depthforge`;
    # vireo_dinov2.py VireoDinoVisionTransformer.__init__ `self.vireo`. The EncoderDecoder attribute is
    # `backbone`.
    return {prefix + k: v for k, v in d.items()}


# ----------------------------------------------------------------------------------------------
# decode_head.*: method-specific parts
# ----------------------------------------------------------------------------------------------


def link_query_edits(head: Keys) -> Keys:
    """ReinMask2FormerHead / DepthForgeMask2FormerHead / VireoMask2FormerHead __init__ edits of the stock head.

    Rein rein/models/heads/rein_mask2former.py class ReinMask2FormerHead.__init__ l.13-21;
    DepthForge depthforge/models/heads/depthforge_mask2former.py class DepthForgeMask2FormerHead.__init__
    l.14-22; Vireo vireo/models/heads/vireo_mask2former.py class VireoMask2FormerHead.__init__ l.43-51.
    """
    head = dict(head)
    del head["query_embed.weight"]  # `del self.query_embed` (rein l.16)
    # `self.vpt_transforms = nn.ModuleList()` (rein l.17): empty, contributes no keys.
    del head["query_feat.weight"]  # replace_query_feat=True (config) -> `del self.query_feat` (l.20)
    head.update(linear("querys2feat", FEAT, FEAT))  # `querys2feat = Linear(feat_channels, feat_channels)` (l.21)
    return head


def dqcm_keys() -> Keys:
    """DynamicQueryCorrectionModule(in_channels=1024, embedding_dim=1024, index=4).

    Instantiated in depthforge_mask2former.py DepthForgeMask2FormerHead.__init__ l.24-26 and
    vireo_mask2former.py VireoMask2FormerHead.__init__ l.53-55 as `self.DQCM`; classes
    `DynamicQueryCorrectionModule` and `AdaptiveAttentionGate` at the end of both files (same code).
    """
    emb, idx, reduction = 1024, 4, 16  # embedding_dim, index; AdaptiveAttentionGate reduction_ratio default 16
    d: Keys = {}
    # AdaptiveAttentionGate(in_channels=embedding_dim): channel_attention = Sequential(Conv2d(C, C//16, 1),
    # ReLU, Conv2d(C//16, C, 1), Sigmoid) -> indices 0 and 2 hold weights; spatial_attention = Conv2d(C, 1, 3).
    d.update(conv2d("DQCM.attention_gate.channel_attention.0", emb, emb // reduction, 1))
    d.update(conv2d("DQCM.attention_gate.channel_attention.2", emb // reduction, emb, 1))
    d.update(conv2d("DQCM.attention_gate.spatial_attention", emb, 1, 3))
    # linear_fuse = Conv2d(embedding_dim * index, embedding_dim, 1)
    d.update(conv2d("DQCM.linear_fuse", emb * idx, emb, 1))
    return d


def vireo_head_extras() -> Keys:
    """vireo_mask2former.py class VireoMask2FormerHead.__init__ l.93-109 and class PriorGenerator."""
    d: Keys = {}
    d.update(linear("cls_embed", FEAT, CLIP_DIM))  # l.93 `cls_embed = Linear(feat_channels, 768)`
    d.update(conv2d("feat_conv", FEAT, FEAT, 1))  # l.100 Conv2d(feat_channels, feat_channels, 1)
    d.update(conv2d("out_conv", FEAT, 1, 1))  # l.101 Conv2d(feat_channels, 1, 1)
    # l.103-109 `prior = PriorGenerator(in_channels=1024, class_embed_dim=768,
    # prompt_number=len(prompt_templates), num_queries=num_queries, transformer_embed_dim=256)`;
    # class PriorGenerator.__init__: feat_proj Conv2d(in, class_embed_dim, 1); coarse_embed
    # Conv2d(prompt_number, 1, 3, padding=1); query_proj Linear(in, transformer_embed_dim); query_proto
    # Parameter(num_queries, transformer_embed_dim).
    d.update(conv2d("prior.feat_proj", 1024, CLIP_DIM, 1))
    d.update(conv2d("prior.coarse_embed", NUM_HEAD_TEMPLATES, 1, 3))
    d.update(linear("prior.query_proj", 1024, 256))
    d["prior.query_proto"] = (NUM_QUERIES, 256)
    # text_features (l.87-91) is a plain attribute; the CLIP model (l.63) is a local: no keys.
    return d


# ----------------------------------------------------------------------------------------------
# decode_head.*: stock mmseg/mmdet Mask2FormerHead, instantiated
# ----------------------------------------------------------------------------------------------

# Constructor arguments of `decode_head` in Rein configs/_base_/models/rein_dinov2_mask2former.py
# (l.42ff), minus `type` and `replace_query_feat` (consumed by ReinMask2FormerHead, see
# link_query_edits). The loss / train_cfg entries hold no parameters but mmdet's constructor reads them.
HEAD_CFG = dict(
    in_channels=[1024, 1024, 1024, 1024],
    strides=[4, 8, 16, 32],
    feat_channels=FEAT,
    out_channels=256,
    num_classes=NUM_CLASSES,
    num_queries=NUM_QUERIES,
    num_transformer_feat_level=3,
    align_corners=False,
    pixel_decoder=dict(
        type="mmdet.MSDeformAttnPixelDecoder",
        num_outs=3,
        norm_cfg=dict(type="GN", num_groups=32),
        act_cfg=dict(type="ReLU"),
        encoder=dict(
            num_layers=6,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=256,
                    num_heads=8,
                    num_levels=3,
                    num_points=4,
                    im2col_step=64,
                    dropout=0.0,
                    batch_first=True,
                    norm_cfg=None,
                    init_cfg=None,
                ),
                ffn_cfg=dict(
                    embed_dims=256,
                    feedforward_channels=1024,
                    num_fcs=2,
                    ffn_drop=0.0,
                    act_cfg=dict(type="ReLU", inplace=True),
                ),
            ),
            init_cfg=None,
        ),
        positional_encoding=dict(num_feats=128, normalize=True),
        init_cfg=None,
    ),
    enforce_decoder_input_project=False,
    positional_encoding=dict(num_feats=128, normalize=True),
    transformer_decoder=dict(
        return_intermediate=True,
        num_layers=9,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=256, num_heads=8, attn_drop=0.0, proj_drop=0.0, dropout_layer=None, batch_first=True
            ),
            cross_attn_cfg=dict(
                embed_dims=256, num_heads=8, attn_drop=0.0, proj_drop=0.0, dropout_layer=None, batch_first=True
            ),
            ffn_cfg=dict(
                embed_dims=256,
                feedforward_channels=2048,
                num_fcs=2,
                act_cfg=dict(type="ReLU", inplace=True),
                ffn_drop=0.0,
                dropout_layer=None,
                add_identity=True,
            ),
        ),
        init_cfg=None,
    ),
    loss_cls=dict(
        type="mmdet.CrossEntropyLoss",
        use_sigmoid=False,
        loss_weight=2.0,
        reduction="mean",
        class_weight=[1.0] * NUM_CLASSES + [0.1],
    ),
    loss_mask=dict(type="mmdet.CrossEntropyLoss", use_sigmoid=True, reduction="mean", loss_weight=5.0),
    loss_dice=dict(
        type="mmdet.DiceLoss",
        use_sigmoid=True,
        activate=True,
        reduction="mean",
        naive_dice=True,
        eps=1.0,
        loss_weight=5.0,
    ),
    train_cfg=dict(
        num_points=12544,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        assigner=dict(
            type="mmdet.HungarianAssigner",
            match_costs=[
                dict(type="mmdet.ClassificationCost", weight=2.0),
                dict(type="mmdet.CrossEntropyLossCost", weight=5.0, use_sigmoid=True),
                dict(type="mmdet.DiceCost", weight=5.0, pred_act=True, eps=1.0),
            ],
        ),
        sampler=dict(type="mmdet.MaskPseudoSampler"),
    ),
)


def _stub_mmcv_ext() -> None:
    """Let mmcv-lite import its ops modules: `load_ext` returns functions that raise when called."""
    import mmcv.utils.ext_loader as ext_loader

    class _NoExt(types.ModuleType):
        def __getattr__(self, name):
            def missing(*_a, **_k):
                raise RuntimeError(f"mmcv._ext.{name} is not compiled (mmcv-lite); only construction is supported")

            return missing

    ext_loader.load_ext = lambda name, funcs: _NoExt(name)


def stock_head_keys() -> tuple[Keys, str]:
    """Build mmseg's Mask2FormerHead with HEAD_CFG; its state-dict names and shapes."""
    _stub_mmcv_ext()
    import mmcv
    import mmdet
    import mmengine
    import mmseg
    import torch
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    from mmseg.models.decode_heads.mask2former_head import Mask2FormerHead
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    init_default_scope("mmseg")
    # built the way mmseg's EncoderDecoder builds `decode_head`: MODELS.build on a ConfigDict
    head = MODELS.build(ConfigDict(type="Mask2FormerHead", **HEAD_CFG))
    assert type(head) is Mask2FormerHead, type(head)
    keys = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    versions = (
        f"torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv(-lite) {mmcv.__version__}, "
        f"mmdet {mmdet.__version__}, mmsegmentation {mmseg.__version__}"
    )
    return keys, versions


# ----------------------------------------------------------------------------------------------


def write_fixture(path: Path, keys: Keys, sources: list[str]) -> None:
    lines = [f"# source: {s}" for s in sources]
    lines.append(
        "# format: name<TAB>shape (comma-separated dims; () = 0-d); generated by "
        "tools/reference_keys/derive_reference_keys.py, do not edit by hand"
    )
    for k in sorted(keys):
        shape = ",".join(str(n) for n in keys[k]) or "()"
        lines.append(f"{k}\t{shape}")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path} ({len(keys)} keys)")


REPOS = {
    "rein": "w1oves/Rein@29755d4a rein/models/backbones/reins.py (Reins, LoRAReins), "
    "rein/models/backbones/reins_dinov2.py (ReinsDinoVisionTransformer)",
    "depthforge": "anonymouse-xzrptkvyqc/DepthForge@2f787da9 depthforge/models/backbones/depthforge.py "
    "(DepthForge, DepthForgeReins), @15d4ee35 depthforge/models/backbones/depth_dinov2.py "
    "(DepthForgeDinoVisionTransformer)",
    "vireo": "anonymouse-9c53tp182bvz/Vireo@728df25d vireo/models/backbones/vireo.py (Vireo, VireoReins), "
    "vireo/models/backbones/vireo_dinov2.py (VireoDinoVisionTransformer)",
}
HEAD_SOURCES = {
    "rein": "w1oves/Rein@29755d4a rein/models/heads/rein_mask2former.py (ReinMask2FormerHead)",
    "depthforge": "anonymouse-xzrptkvyqc/DepthForge@2f787da9 depthforge/models/heads/depthforge_mask2former.py "
    "(DepthForgeMask2FormerHead, DynamicQueryCorrectionModule, AdaptiveAttentionGate)",
    "vireo": "anonymouse-9c53tp182bvz/Vireo@728df25d vireo/models/heads/vireo_mask2former.py "
    "(VireoMask2FormerHead, DynamicQueryCorrectionModule, AdaptiveAttentionGate, PriorGenerator)",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="tests/fixtures/reference_keys")
    p.add_argument("--adapters-only", action="store_true", help="write only backbone_*.txt (no mm* packages)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for m in ("rein", "depthforge", "vireo"):
        write_fixture(
            out / f"backbone_{m}.txt",
            adapter_keys(m),
            [REPOS[m] + "; ViT-L/16 config: 24 layers, 1024 dims, 100 tokens, lora_dim 16, query_dims 256"],
        )
    if args.adapters_only:
        return 0
    stock, versions = stock_head_keys()
    base = {"decode_head." + k: v for k, v in link_query_edits(stock).items()}
    heads = {
        "rein": base,
        "depthforge": {**base, **{"decode_head." + k: v for k, v in dqcm_keys().items()}},
        "vireo": {**base, **{"decode_head." + k: v for k, v in {**dqcm_keys(), **vireo_head_extras()}.items()}},
    }
    for m, keys in heads.items():
        write_fixture(
            out / f"decode_head_{m}.txt",
            keys,
            [
                f"mmseg Mask2FormerHead (over mmdet Mask2FormerHead) instantiated with {versions}; config: decode_head "
                "of w1oves/Rein@29755d4a configs/_base_/models/rein_dinov2_mask2former.py (19 classes)",
                HEAD_SOURCES[m] + " (edits read from source, see derive_reference_keys.py)",
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
