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

from learned_sampler._validation import check_floating


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
    # Outside (s > 0): 0.5 exp(-s/beta); inside: 1 - 0.5 exp(s/beta). Each branch clamps its own
    # side instead of using |s|, whose zero derivative at s = 0 would zero the gradient exactly
    # on the surface (the true derivative there is -1 / (2 beta^2)).
    outside = 0.5 * torch.exp(-sdf.clamp_min(0.0) / beta)
    inside = 1.0 - 0.5 * torch.exp(sdf.clamp_max(0.0) / beta)
    cdf = torch.where(sdf > 0, outside, inside)
    return cdf / beta
