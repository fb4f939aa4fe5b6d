"""Test-side building blocks for the order-one formula tests: float64 inputs, plain einsum / softmax
re-derivations (never the modules' own helpers) and the sensitivity check that makes a pass mean
something (``tests/models/test_formulas.py`` explains the approach)."""

from __future__ import annotations

import math

import torch

TOL = dict(rtol=1e-9, atol=1e-9)  # float64 re-derivations: only rounding may differ
SENSITIVE = 1e-2  # a wrong formula must move the output by at least this (relative)


def randn(*shape, seed=1, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def softmax(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def linear(x, lin):
    return torch.einsum("...i,oi->...o", x, lin.weight) + lin.bias


def unit(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True))


def rel(a, b) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def assert_sensitive(ref, **wrong):
    """Each plausible mistake must change the reference output by >= SENSITIVE (relative)."""
    for what, w in wrong.items():
        assert rel(w, ref) > SENSITIVE, f"the test cannot see '{what}' ({rel(w, ref):.2e} relative)"


def query_link_ref(tokens, ad):
    """rein.md §5: transform every layer's tokens (L, T, C), pool max/mean/last over layers, INTERLEAVE per
    channel ([m0, a0, z0, m1, ...]), merge -> (T, D)."""
    t = linear(tokens, ad.transform)
    L, Tn, D = t.shape
    m, a, z = t.max(dim=0).values, t.sum(dim=0) / L, t[L - 1]
    q = torch.empty(Tn, 3 * D, dtype=t.dtype)
    for d in range(D):
        q[:, 3 * d], q[:, 3 * d + 1], q[:, 3 * d + 2] = m[:, d], a[:, d], z[:, d]
    return linear(q, ad.merge)


FULL_TOKENS = (
    "learnable_tokens",
    "learnable_tokens2",
    "learnable_tokens_a",
    "learnable_tokens_a2",
    "depth_tokens",
    "depth_tokens_a",
    "query_proto",
)
TOKEN_B_FACTORS = ("learnable_tokens_b", "learnable_tokens_b2", "depth_tokens_b")


def order_one_(module: torch.nn.Module, seed: int = 0, *, perturb_haar: bool = True) -> torch.nn.Module:
    """Float64 and order-one weights: full tokens and low-rank factors A with A@B ~ N(0, 1) (B scaled by
    1/sqrt(rank)), matrices N(0, 1/fan_in), vectors and scalars N(0, 0.25), the adapter scale 0.9 (order one
    and != 1), and FADA's Haar kernels (``wavepool.*``) + N(0, 0.25) per channel when ``perturb_haar``."""
    g = torch.Generator().manual_seed(seed)
    module.double()
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if name.startswith("wavepool."):
                v = p + (0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype) if perturb_haar else 0)
            elif leaf in FULL_TOKENS:
                v = torch.randn(p.shape, generator=g, dtype=p.dtype)
            elif leaf in TOKEN_B_FACTORS:
                v = torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(p.shape[-2])
            elif leaf == "scale":
                v = torch.full_like(p, 0.9)
            elif p.dim() >= 2:
                v = torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(p[0].numel())
            else:
                v = 0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.copy_(v)
    return module
