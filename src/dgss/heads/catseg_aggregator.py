"""CAT-Seg's cost aggregation (docs/methods/catseg.md): cost volume, spatial and class aggregation,
guidance and the per-class upsampling decoder.

Data flow (ViT-L/14@336: E = 768, g = 24, T classes, P = 1 prompt)::

    F (B,E,g,g), text (B,T,P,E) -> C = <F/|F|, E/|E|> (B,P,T,g,g)   [T > pad_len: keep top pad_len per image]
    -> conv1 7x7 (P -> 128) per class -> X (B,T,128,g,g)
    G = ReLU(conv3x3(F)) (B,128,g,g);  U = ReLU(Linear(normalise(mean_p E))) (B,T,128)
    2 x [Swin pair per class (window 12, shift 0/6, guidance G in q/k); linear attention over classes
         per pixel (guidance U in q/k, padded with learned tokens to pad_len classes)]
    -> decoder (guidance D1 = ReLU(conv(g1)) 2g, D2 = ReLU(conv(g2)) 4g) -> logits (B,T,4g,4g)
    pruned classes: -100
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ClassCountError
from .catseg_decoder import GuidedUpsample

PRUNED_LOGIT = -100.0


@dataclass(frozen=True)
class AggregatorConfig:
    """Sizes and switches of the aggregator (reference values for ViT-L; ViT-B: ``feature_dim`` 512)."""

    feature_dim: int = 768  # CLIP embedding E (image and text)
    hidden: int = 128
    appearance_guidance: int = 128
    text_guidance: int = 128
    tap_guidance_in: tuple[int, int] = (256, 128)  # channels of g1, g2 (after the model's ConvT upsampling)
    decoder_guidance: tuple[int, int] = (32, 16)
    decoder_dims: tuple[int, int] = (64, 32)
    prompts: int = 1
    layers: int = 2
    heads: int = 4
    window: int = 12
    grid: int = 24  # side of the CLIP token grid
    mlp_ratio: int = 4
    pad_len: int = 256  # classes the class attention sees (padding / pruning); 0: no padding, no pruning
    prune: bool = True  # T > pad_len: keep the top pad_len classes per image (False: refuse)

    def __post_init__(self) -> None:
        if self.grid % self.window:
            raise ValueError(f"the token grid {self.grid} must be a multiple of the window {self.window}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} must be divisible by {self.heads} heads")


def cost_volume(feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine cost volume: feats (B, E, h, w), text (B, T, P, E) -> (B, P, T, h, w), both sides unit-normalised."""
    f = F.normalize(feats, dim=1)
    t = F.normalize(text, dim=-1)
    return torch.einsum("bchw,btpc->bpthw", f, t)


def shift_window_mask(grid: int, window: int, shift: int) -> torch.Tensor:
    """Swin's shifted-window mask (nW, window², window²): -100 between tokens of different shift regions."""
    region = torch.zeros(grid, grid)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    n = 0
    for hs in cuts:
        for ws in cuts:
            region[hs, ws] = n
            n += 1
    ids = _windows(region[None, :, :, None], window).squeeze(-1)  # (nW, window²)
    diff = ids[:, None, :] != ids[:, :, None]
    return torch.zeros(diff.shape).masked_fill(diff, -100.0)


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(N, H, W, C) -> (N * H/w * W/w, w*w, C), windows in row-major order."""
    N, H, W, C = x.shape
    x = x.reshape(N, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, C)


def _unwindows(x: torch.Tensor, w: int, N: int, H: int, W: int) -> torch.Tensor:
    C = x.shape[-1]
    x = x.reshape(N, H // w, W // w, w, w, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(N, H, W, C)


class GuidedWindowAttention(nn.Module):
    """Window attention with guidance in q and k only: q, k = Linear([x ‖ g]), v = Linear(x), proj; no
    relative-position bias."""

    def __init__(self, dim: int, guidance_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim + guidance_dim, dim)
        self.k = nn.Linear(dim + guidance_dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (N*nW, n, C), g (N*nW, n, Cg), mask (nW, n, n) or None -> (N*nW, n, C)."""
        M, n, C = x.shape
        h = self.heads
        xg = torch.cat([x, g], dim=-1)

        def split(t):
            return t.reshape(M, n, h, C // h).transpose(1, 2)

        q, k, v = split(self.q(xg)), split(self.k(xg)), split(self.v(x))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // h)
        if mask is not None:
            nW = mask.shape[0]
            att = (att.reshape(M // nW, nW, h, n, n) + mask[None, :, None].to(att.dtype)).reshape(M, h, n, n)
        out = att.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(M, n, C))


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class GuidedSwinBlock(nn.Module):
    """X = X + roll_back(WindowAttn(roll([LN1(X) ‖ Ĝ]))); X = X + MLP(LN2(X)). Shift 0 or window/2."""

    def __init__(self, dim: int, guidance_dim: int, heads: int, window: int, shift: int, grid: int, mlp_ratio: int):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GuidedWindowAttention(dim, guidance_dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        mask = shift_window_mask(grid, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """x (N, H, W, C), g (N, H, W, Cg) (normalised guidance) -> (N, H, W, C)."""
        N, H, W, C = x.shape
        s, w = self.shift, self.window
        y = self.norm1(x)
        if s:
            y, g = torch.roll(y, (-s, -s), dims=(1, 2)), torch.roll(g, (-s, -s), dims=(1, 2))
        out = self.attn(_windows(y, w), _windows(g, w), self.attn_mask)
        out = _unwindows(out, w, N, H, W)
        if s:
            out = torch.roll(out, (s, s), dims=(1, 2))
        x = x + out
        return x + self.mlp(self.norm2(x))


class GuidedSwinPair(nn.Module):
    """``block_1`` (no shift), ``block_2`` (shift window/2), one ``guidance_norm`` shared by both."""

    def __init__(self, cfg: AggregatorConfig):
        super().__init__()
        args = (cfg.hidden, cfg.appearance_guidance, cfg.heads, cfg.window)
        self.block_1 = GuidedSwinBlock(*args, 0, cfg.grid, cfg.mlp_ratio)
        self.block_2 = GuidedSwinBlock(*args, cfg.window // 2, cfg.grid, cfg.mlp_ratio)
        self.guidance_norm = nn.LayerNorm(cfg.appearance_guidance)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """x (B, T, C, H, W), guidance (B, Cg, H, W) -> (B, T, C, H, W); every class separately."""
        B, T, C, H, W = x.shape
        g = self.guidance_norm(guidance.permute(0, 2, 3, 1))
        g = g.repeat_interleave(T, dim=0)  # (B*T, H, W, Cg), b-major like x
        y = x.reshape(B * T, C, H, W).permute(0, 2, 3, 1)
        y = self.block_2(self.block_1(y, g), g)
        return y.permute(0, 3, 1, 2).reshape(B, T, C, H, W)


class LinearClassAttention(nn.Module):
    """Linear attention over classes, φ = elu + 1, guidance in q and k, no output projection:
    out_l = Σ_s (q_l·k_s) v_s / (q_l·Σ_s k_s + 1e-6), per head."""

    def __init__(self, dim: int, guidance_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim + guidance_dim, dim)
        self.k = nn.Linear(dim + guidance_dim, dim)
        self.v = nn.Linear(dim, dim)

    def forward(self, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """y (N, T, C), u (N, T, Cu) -> (N, T, C)."""
        N, T, C = y.shape
        h = self.heads
        yu = torch.cat([y, u], dim=-1)
        q = (F.elu(self.q(yu)) + 1).reshape(N, T, h, C // h)
        k = (F.elu(self.k(yu)) + 1).reshape(N, T, h, C // h)
        v = self.v(y).reshape(N, T, h, C // h)
        kv = torch.einsum("nshd,nshe->nhde", k, v)
        den = torch.einsum("nlhd,nhd->nlh", q, k.sum(dim=1)) + 1e-6
        out = torch.einsum("nlhd,nhde->nlhe", q, kv) / den[..., None]
        return out.reshape(N, T, C)


class ClassAggregation(nn.Module):
    """Per pixel of the s x s pooled map: Z' = Z + Attn(LN1(Z), U); Z'' = Z' + MLP(LN2(Z')) over the
    classes, padded with learned tokens to ``pad_len``; X + upsample(Z'') (reference residual)."""

    def __init__(self, cfg: AggregatorConfig):
        super().__init__()
        d, du = cfg.hidden, cfg.text_guidance
        self.pad_len = cfg.pad_len
        self.attention = LinearClassAttention(d, du, cfg.heads)
        self.MLP = nn.Sequential(nn.Linear(d, d * cfg.mlp_ratio), nn.ReLU(), nn.Linear(d * cfg.mlp_ratio, d))
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.padding_tokens = nn.Parameter(torch.zeros(1, 1, d))
        self.padding_guidance = nn.Parameter(torch.zeros(1, 1, du))

    def forward(self, x: torch.Tensor, u: torch.Tensor, pool: int) -> torch.Tensor:
        """x (B, T, C, H, W), u (B, T, Cu) -> (B, T, C, H, W)."""
        B, T, C, H, W = x.shape
        z = x.reshape(B * T, C, H, W)
        if pool > 1:
            z = F.avg_pool2d(z, pool)
        h, w = z.shape[-2:]
        z = z.reshape(B, T, C, h, w).permute(0, 3, 4, 1, 2).reshape(B * h * w, T, C)
        g = u[:, None, None].expand(B, h, w, T, u.shape[-1]).reshape(B * h * w, T, -1)
        if self.pad_len and T < self.pad_len:
            n = self.pad_len - T
            z = torch.cat([z, self.padding_tokens.to(z.dtype).expand(z.shape[0], n, C)], dim=1)
            g = torch.cat([g, self.padding_guidance.to(g.dtype).expand(g.shape[0], n, g.shape[-1])], dim=1)
        z = z + self.attention(self.norm1(z), g)
        z = z + self.MLP(self.norm2(z))
        z = z[:, :T].reshape(B, h, w, T, C).permute(0, 3, 4, 1, 2).reshape(B * T, C, h, w)
        if (h, w) != (H, W):
            z = F.interpolate(z, size=(H, W), mode="bilinear", align_corners=True)
        return x + z.reshape(B, T, C, H, W)


class AggregatorLayer(nn.Module):
    """``swin_block`` (spatial, per class) then ``attention`` (over classes, per pixel)."""

    def __init__(self, cfg: AggregatorConfig):
        super().__init__()
        self.swin_block = GuidedSwinPair(cfg)
        self.attention = ClassAggregation(cfg)

    def forward(self, x: torch.Tensor, appearance: torch.Tensor, text: torch.Tensor, pool: int) -> torch.Tensor:
        return self.attention(self.swin_block(x, appearance), text, pool)


class CatSegAggregator(nn.Module):
    """Cost volume -> aggregated per-class logits at 4x the token grid (see the module docstring).

    Submodule names follow the released checkpoints (``sem_seg_head.predictor.transformer.*``).
    """

    def __init__(self, cfg: AggregatorConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden
        self.conv1 = nn.Conv2d(cfg.prompts, d, kernel_size=7, padding=3)
        self.layers = nn.ModuleList(AggregatorLayer(cfg) for _ in range(cfg.layers))
        self.guidance_projection = nn.Sequential(
            nn.Conv2d(cfg.feature_dim, cfg.appearance_guidance, 3, padding=1), nn.ReLU()
        )
        self.text_guidance_projection = nn.Sequential(nn.Linear(cfg.feature_dim, cfg.text_guidance), nn.ReLU())
        self.decoder_guidance_projection = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU())
            for c_in, c_out in zip(cfg.tap_guidance_in, cfg.decoder_guidance, strict=True)
        )
        (g1, g2), (o1, o2) = cfg.decoder_guidance, cfg.decoder_dims
        self.decoder1 = GuidedUpsample(d, o1, g1)
        self.decoder2 = GuidedUpsample(o1, o2, g2)
        self.head = nn.Conv2d(o2, 1, kernel_size=3, padding=1)

    def select_classes(self, feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor | None:
        """Indices (B, pad_len) of the classes kept per image when T > pad_len (top max-cosine), else None."""
        T, cap = text.shape[1], self.cfg.pad_len
        if not cap or T <= cap:
            return None
        if not self.cfg.prune:
            raise ClassCountError(
                f"a vocabulary of {T} classes exceeds the aggregator's {cap} class slots with pruning off: "
                f"turn pruning on (model.catseg.prune: true) or set pad_len 0"
            )
        score = cost_volume(feats, text).amax(dim=(1, 3, 4))  # (B, T)
        return score.topk(cap, dim=1, sorted=False).indices

    def forward(
        self,
        feats: torch.Tensor,
        text: torch.Tensor,
        taps: tuple[torch.Tensor, torch.Tensor],
        pool: int = 2,
        class_chunk: int | None = None,
    ) -> torch.Tensor:
        """feats (B, E, g, g), text (B, T, P, E), taps (g1 (B, 256, 2g, 2g), g2 (B, 128, 4g, 4g))
        -> logits (B, T, 4g, 4g). ``class_chunk``: classes per decoder pass (exact; saves memory)."""
        B, T = text.shape[:2]
        keep = self.select_classes(feats, text)
        if keep is not None:
            text = torch.gather(text, 1, keep[:, :, None, None].expand(-1, -1, *text.shape[2:]))
        Tk = text.shape[1]
        cost = cost_volume(feats, text)  # (B, P, Tk, g, g)
        g = cost.shape[-1]
        x = self.conv1(cost.transpose(1, 2).reshape(B * Tk, -1, g, g)).reshape(B, Tk, -1, g, g)
        appearance = self.guidance_projection(feats)
        t = F.normalize(F.normalize(text, dim=-1).mean(dim=2), dim=-1)
        text_guid = self.text_guidance_projection(t)
        for layer in self.layers:
            x = layer(x, appearance, text_guid, pool)
        d1, d2 = (proj(tap) for proj, tap in zip(self.decoder_guidance_projection, taps, strict=True))
        logits = torch.cat(
            [self.decode(x[:, s : s + (class_chunk or Tk)], d1, d2) for s in range(0, Tk, class_chunk or Tk)], dim=1
        )
        if keep is None:
            return logits
        out = logits.new_full((B, T, *logits.shape[-2:]), PRUNED_LOGIT)
        return out.scatter(1, keep[:, :, None, None].expand(-1, -1, *logits.shape[-2:]), logits)

    def decode(self, x: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        """x (B, T, C, g, g), guidance d1 (B, C1, 2g, 2g), d2 (B, C2, 4g, 4g) -> logits (B, T, 4g, 4g)."""
        B, T, C, g, _ = x.shape
        y = self.decoder1(x.reshape(B * T, C, g, g), d1.repeat_interleave(T, dim=0))
        y = self.decoder2(y, d2.repeat_interleave(T, dim=0))
        return self.head(y).reshape(B, T, *y.shape[-2:])
