"""Density of a signed distance field, VolSDF style (the paper's Eq. 1).

``sigma = (1 / beta) * Psi_beta(-s)`` where ``Psi_beta`` is the CDF of a zero-mean Laplace
distribution with scale ``beta``. Convention: ``s`` is positive *outside* the surface (a sphere of
radius r is ``|x| - r``), so the density tends to ``1 / beta`` inside and to 0 outside, and the
surface is the zero level set. The paper writes the same law with ``s`` positive inside.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from learned_sampler.validation import check_floating


def volsdf_density(
    sdf: Float[Tensor, "*shape"],
    beta: Float[Tensor, "*shape"] | float,
) -> Float[Tensor, "*shape"]:
    """Density per world unit from signed distances ``sdf`` (world units) and Laplace scales ``beta``.

    ``beta`` may vary per sample (the paper's spatially varying beta) and broadcasts against
    ``sdf``. Stable for tiny ``beta``: the exponential is only ever taken of ``-|s| / beta <= 0``.
    """
    check_floating("sdf", sdf)
    if not isinstance(beta, Tensor):
        beta = torch.as_tensor(float(beta), dtype=sdf.dtype, device=sdf.device)
    check_floating("beta", beta)
    if bool((beta.detach() <= 0).any()):
        raise ValueError("beta must be > 0 everywhere")
    # Outside (s > 0): 0.5 exp(-s/beta); inside: 1 - 0.5 exp(s/beta). Each branch sees only its
    # own side of s, selected with where: |s| or a clamp would give a zero (or, depending on the
    # torch version, halved) derivative exactly on the surface, where it is -1 / (2 beta^2).
    is_outside = sdf > 0
    zero = torch.zeros_like(sdf)
    outside = 0.5 * torch.exp(-torch.where(is_outside, sdf, zero) / beta)
    inside = 1.0 - 0.5 * torch.exp(torch.where(is_outside, zero, sdf) / beta)
    cdf = torch.where(is_outside, outside, inside)
    return cdf / beta
