"""Test-side building blocks for the order-one formula tests: float64 inputs, plain einsum / softmax
re-derivations (never the modules' own helpers) and the sensitivity check that makes a pass mean
something (``tests/models/test_formulas.py`` explains the approach)."""
from __future__ import annotations

import torch

TOL = dict(rtol=1e-9, atol=1e-9)   # float64 re-derivations: only rounding may differ
SENSITIVE = 1e-2                   # a wrong formula must move the output by at least this (relative)


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


