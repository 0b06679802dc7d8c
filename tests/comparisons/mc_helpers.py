"""Monte-Carlo helpers shared by the kernel tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# Tolerance of every Monte-Carlo check: 4 standard errors. With ~25 entries per check the chance
# that a correct closed form fails is about 25 * 6e-5 = 1.6e-3 per check (and the seeds are fixed).
NUM_SE = 4.0


def mc_second_moment(
    draw_units: Callable[[int, torch.Generator], torch.Tensor],
    num_samples: int = 1_000_000,
    chunk: int = 100_000,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error of ``a_i a_j`` over i.i.d. draws.

    ``draw_units(n, generator)`` returns ``n x P`` activations of ``n`` independent units at
    ``P`` points; returns the ``P x P`` mean of the per-unit products and its standard error
    ``std / sqrt(num_samples)``.
    """
    g = torch.Generator().manual_seed(seed)
    total = total_sq = None
    for start in range(0, num_samples, chunk):
        a = draw_units(min(chunk, num_samples - start), g).double()
        prod = a.unsqueeze(-1) * a.unsqueeze(-2)  # n x P x P
        s, s2 = prod.sum(0), prod.pow(2).sum(0)
        total = s if total is None else total + s
        total_sq = s2 if total_sq is None else total_sq + s2
    mean = total / num_samples
    var = (total_sq / num_samples - mean.pow(2)).clamp_min(0) * num_samples / (num_samples - 1)
    return mean, (var / num_samples).sqrt()


def gauss_hermite_second_moment(
    act: Callable[[torch.Tensor], torch.Tensor], cov: torch.Tensor, num_nodes: int = 80
) -> torch.Tensor:
    """``E[act(u_i) act(u_j)]`` for ``u ~ N(0, cov)`` by 2-D Gauss-Hermite quadrature per pair."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(num_nodes)
    z = torch.as_tensor(nodes, dtype=torch.float64)
    w = torch.as_tensor(weights / np.sqrt(2 * np.pi), dtype=torch.float64)
    z1, z2 = torch.meshgrid(z, z, indexing="ij")
    ww = w[:, None] * w[None, :]
    n = cov.shape[-1]
    out = torch.empty(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            vi, vj, c = cov[i, i], cov[j, j], cov[i, j]
            # u = sqrt(vi) z1, v = c/sqrt(vi) z1 + sqrt(vj - c^2/vi) z2
            u = vi.sqrt() * z1
            v = c / vi.sqrt() * z1 + (vj - c**2 / vi).clamp_min(0).sqrt() * z2
            out[i, j] = (ww * act(u) * act(v)).sum()
    return out
