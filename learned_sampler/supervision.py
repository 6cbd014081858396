"""Supervision of the proposal CNN (paper Eq. 7-8).

Targets come from dense uniform samples on a full-resolution patch: their volume rendering
weights are summed into the ``K`` depth bins, blurred along depth with a 1-D Gaussian (its width
is not given by the paper: ``blur_sigma`` bins, default 1), entries below ``5e-3`` are suppressed,
and the result is L1 normalised. The loss is the cross-entropy of the CNN's distribution against
these targets, averaged over rays.

Rays the suppression would empty (a faint, spread-out volume) keep their blurred weights, so every
ray that hits anything has a valid distribution to learn. Rays that hit nothing at all (the paper's
data has none) get ``empty_target``: ``"far"`` (default) puts all mass in the last bin, treating
empty space as background at the far plane, so the CNN learns a confident "nothing here" and the
adaptive budget is not spent on empty rays; ``"uniform"`` spreads it over all bins, so empty rays
keep sampling the whole depth range.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from typing import Literal

from jaxtyping import Float
from torch import Tensor

from learned_sampler.validation import check_floating, check_positive_int


def gaussian_blur_bins(weights: Float[Tensor, "*batch num_bins"], sigma: float) -> Float[Tensor, "*batch num_bins"]:
    """Blur along the bin axis with a normalised Gaussian of std ``sigma`` bins (zero padding)."""
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return weights
    radius = max(1, int(math.ceil(3.0 * sigma)))
    offsets = torch.arange(-radius, radius + 1, device=weights.device, dtype=weights.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    flat = weights.reshape(-1, 1, weights.shape[-1])
    return F.conv1d(flat, kernel, padding=radius).reshape(weights.shape)


def proposal_targets(
    dense_weights: Float[Tensor, "*batch num_samples"],
    num_bins: int,
    blur_sigma: float = 1.0,
    suppress_below: float = 5e-3,
    empty_target: Literal["far", "uniform"] = "far",
) -> Float[Tensor, "*batch num_bins"]:
    """The paper's ``Normalize(Suppress(Blur(P)))`` from dense weights.

    Args:
        dense_weights: volume rendering weights of ``num_samples`` uniform samples per ray over the
            same ``[near, far]`` as the bins; ``num_samples`` must be a multiple of ``num_bins``.
        num_bins: depth bins of the target distribution.
        blur_sigma: std of the Gaussian blur along depth, in bins.
        suppress_below: entries below this (absolute weight) are zeroed.
        empty_target: target of rays that hit nothing, ``"far"`` or ``"uniform"`` (see above).
    """
    check_floating("dense_weights", dense_weights)
    check_positive_int("num_bins", num_bins, minimum=2)
    if dense_weights.shape[-1] % num_bins:
        raise ValueError(
            f"dense_weights has {dense_weights.shape[-1]} samples per ray, not a multiple of num_bins={num_bins}"
        )
    if suppress_below < 0:
        raise ValueError(f"suppress_below must be >= 0, got {suppress_below}")
    if empty_target not in ("far", "uniform"):
        raise ValueError(f"empty_target must be 'far' or 'uniform', got {empty_target!r}")
    weights = torch.nan_to_num(dense_weights.detach(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    binned = weights.reshape(*weights.shape[:-1], num_bins, -1).sum(dim=-1)
    blurred = gaussian_blur_bins(binned, blur_sigma)
    suppressed = torch.where(blurred >= suppress_below, blurred, torch.zeros_like(blurred))
    kept = suppressed.sum(dim=-1, keepdim=True)
    spread = blurred.sum(dim=-1, keepdim=True)
    if empty_target == "uniform":
        empty = torch.full_like(blurred, 1.0 / num_bins)
    else:
        empty = torch.zeros_like(blurred)
        empty[..., -1] = 1.0
    return torch.where(
        kept > 0,
        suppressed / kept.clamp_min(1e-30),
        torch.where(spread > 1e-12, blurred / spread.clamp_min(1e-30), empty),
    )


def proposal_loss(
    logits: Float[Tensor, "*batch num_bins"], targets: Float[Tensor, "*batch num_bins"]
) -> Float[Tensor, ""]:
    """Cross-entropy ``-sum_j target_j log p_hat_j`` averaged over rays (paper Eq. 8).

    Takes the CNN's logits (``p_hat = softmax(logits)``) so the log is computed stably.
    """
    check_floating("logits", logits)
    check_floating("targets", targets)
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have the same shape")
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
