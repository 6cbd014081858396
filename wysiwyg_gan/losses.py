"""Loss terms of the paper's objective (Eq. 10-12) and of the discriminator.

``L_G = L_adv + lambda_sampler L_sampler + lambda_surface L_surface + lambda_dec L_dec``;
``L_D = softplus(D(fake)) + softplus(-D(real)) + (gamma / 2) |grad_x D(real)|^2`` (lazy R1).
The paper writes L_surface and L_dec as sums over pixels and samples; here they are means, so
their weights (which the paper does not give) do not depend on the resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def generator_adversarial_loss(fake_logits: Float[Tensor, "batch 1"]) -> Tensor:
    """Non-saturating GAN loss ``softplus(-D(G(z)))``."""
    return F.softplus(-fake_logits).mean()


def discriminator_adversarial_loss(
    real_logits: Float[Tensor, "batch 1"], fake_logits: Float[Tensor, "batch 1"]
) -> Tensor:
    """``softplus(D(fake)) + softplus(-D(real))``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: Float[Tensor, "batch 1"], real_images: Float[Tensor, "batch 3 h w"]) -> Tensor:
    """Mean over images of ``|grad_x D(x)|^2`` at real images (``real_images`` must require grad)."""
    (gradient,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return gradient.square().sum(dim=(1, 2, 3)).mean()


def surface_tightness_loss(
    surface_variance: Float[Tensor, "batch 1 h w"], opacity: Float[Tensor, "batch 1 h w"], target: float
) -> Tensor:
    """L_surface (Eq. 10): squared distance of the rendered beta image B to ``B_target``, the target
    scaled by each pixel's (detached) opacity.

    B composites beta with the rendering weights, so it is at most ``0.0199 x opacity``. The paper's
    data (faces before a background) has opaque pixels only, where this is its loss; on data with
    empty background an unscaled target would pull every empty pixel's B, hence its opacity,
    towards ``B_target`` (haze), while scaled it asks nothing of empty pixels."""
    return (surface_variance - target * opacity.detach()).square().mean()


def decision_boundary_loss(
    uniform_sdf: Float[Tensor, "*samples"],
    sharpness: float = 100.0,
    free_space: Float[Tensor, "*samples"] | None = None,
) -> Tensor:
    """L_dec (Eq. 11): the mean of ``exp(-sharpness |s|)`` at uniform samples along the rays (the
    probe's), penalising SDF values near 0 (density growing out of the background).

    The paper's text reads ``exp(-2 |s|)``; with SDFs in world units (a box of side 1) that term
    is nearly flat, and the cheapest way to lower it is to raise the SDF everywhere, which shrinks
    every object until the scene is empty (seen on the CPU preset). The default is StyleSDF's
    sharpness of 100 (the paper's [45]), which acts only within about 0.01 of a zero crossing.

    Over every sample this is StyleSDF's minimal-surface loss: the share of uniform samples near a
    zero crossing grows with the area of the surfaces, so it also shrinks the visible surfaces,
    which rounds shapes off. ``free_space`` (1 at the samples a ray passes through before its
    visible surface, 0 elsewhere; ``wysiwyg_gan.rendering.free_space_mask``) restricts it to the empty space in front of
    the visible surfaces, where the paper's motivation lies; the mean stays over every sample.
    """
    penalty = torch.exp(-sharpness * uniform_sdf.abs())
    if free_space is not None:
        if free_space.shape != uniform_sdf.shape:
            raise ValueError(f"free_space {tuple(free_space.shape)} must have the shape of uniform_sdf {tuple(uniform_sdf.shape)}")
        penalty = penalty * free_space
    return penalty.mean()

