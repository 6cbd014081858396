"""A full-resolution prior over depth bins from a low-resolution probe, by interpolating depth.

Bilinear upsampling of the probe's weights mixes the distributions of neighbouring probe pixels:
on a sloped surface whose depth is bin 23 at one probe pixel and bin 26 at the next, the pixels in
between get two modes at 23 and 26 and none at 24-25, where their surface is. Interpolating the
probe's *depth* instead puts the mode where a smooth surface is, to a fraction of a bin.

``depth_guided_prior`` mixes both: a Gaussian around the interpolated depth (right on smooth
surfaces) and the upsampled weights (which keep both sides of a depth discontinuity, where
interpolated depth lies between the two surfaces). The Gaussian's share shrinks where the depths
being interpolated disagree (a depth edge) or a probe ray holds several surfaces (a thin rod in
front of a wall). ``ProposalNetwork`` adds the prior's log to the CNN's logits (``probe_skip``),
so the CNN learns corrections to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from learned_sampler.sampling import normalize_distribution
from learned_sampler.validation import check_positive_int, check_probability


def probe_median_depth(
    weights: Float[Tensor, "batch num_bins height width"],
) -> tuple[Float[Tensor, "batch height width"], Float[Tensor, "batch height width"]]:
    """The depth, in bins (0 at near, ``num_bins`` at far), at which each probe ray's cumulative
    weight reaches half its opacity, and that opacity.

    The median, not the mean: a ray through a semi-transparent front surface onto a far one has
    its mean in the empty space between them. Within the bin the cumulative weight crosses one
    half, the depth is interpolated linearly. Rays with zero opacity get depth 0 (their opacity
    says they carry no depth).
    """
    if weights.dim() != 4:
        raise ValueError(f"weights must have shape (B, num_bins, h, w), got {tuple(weights.shape)}")
    weights = torch.nan_to_num(weights, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    opacity = weights.sum(dim=1)
    cumulative = torch.cumsum(weights, dim=1) / opacity.clamp_min(1e-12)[:, None]
    num_bins = weights.shape[1]
    crossing = (cumulative < 0.5).sum(dim=1).clamp_max(num_bins - 1)
    below = torch.where(
        crossing > 0,
        cumulative.gather(1, (crossing - 1).clamp_min(0)[:, None])[:, 0],
        torch.zeros_like(opacity),
    )
    at = cumulative.gather(1, crossing[:, None])[:, 0]
    fraction = ((0.5 - below) / (at - below).clamp_min(1e-12)).clamp(0.0, 1.0)
    depth = torch.where(opacity > 0, crossing.to(weights.dtype) + fraction, torch.zeros_like(opacity))
    return depth, opacity


def depth_guided_prior(
    probe_weights: Float[Tensor, "batch num_bins height width"],
    downscale: int,
    depth_share: float = 0.5,
    depth_sigma: float = 2.0,
) -> Float[Tensor, "batch num_bins height_out width_out"]:
    """Distribution over bins at ``downscale`` x the probe resolution (sums to 1 per pixel).

    Up to ``depth_share`` of each pixel's mass is a Gaussian of std ``depth_sigma`` bins around the
    median depth interpolated bilinearly between the probe pixels that hit something (a normalised
    convolution, so empty neighbours do not pull the depth towards near); the rest is the bilinearly
    upsampled, normalised probe weights. The share is scaled by ``exp(-v / (2 depth_sigma^2))``,
    with ``v`` the interpolated variance of the probe depths (their disagreement plus each probe
    ray's own spread along depth), so that depth edges and rays with several surfaces keep the
    upsampled weights. Pixels whose neighbourhood hit nothing get the uniform distribution.
    """
    if probe_weights.dim() != 4:
        raise ValueError(f"probe_weights must have shape (B, num_bins, h, w), got {tuple(probe_weights.shape)}")
    check_positive_int("downscale", downscale)
    depth_share = check_probability("depth_share", depth_share, open_low=False)
    if not depth_sigma > 0:
        raise ValueError(f"depth_sigma must be > 0 bins, got {depth_sigma}")

    def upsample(x: Tensor) -> Tensor:
        if downscale == 1:
            return x
        return F.interpolate(x, scale_factor=downscale, mode="bilinear", align_corners=False)

    weights = torch.nan_to_num(probe_weights, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    upsampled = upsample(weights)
    mixture = upsampled / upsampled.sum(dim=1, keepdim=True).clamp_min(1e-12)
    if depth_share > 0:
        depth, opacity = probe_median_depth(weights)
        hit_share = upsample(opacity[:, None])

        def interpolate(per_ray: Tensor) -> Tensor:
            """Bilinear interpolation over the probe rays that hit, weighted by their opacity."""
            return upsample((opacity * per_ray)[:, None]) / hit_share.clamp_min(1e-12)

        interpolated = interpolate(depth)
        centres = _bin_centres(weights)
        gaussian = torch.exp(-0.5 * ((centres - interpolated) / depth_sigma) ** 2)
        gaussian = gaussian / gaussian.sum(dim=1, keepdim=True)
        # Across a depth edge the probe pixels being interpolated disagree, and the interpolated
        # depth lies between two surfaces: there the upsampled weights are trusted instead, by
        # the spread (bilinearly weighted variance) of the interpolated depths against the Gaussian's.
        spread = interpolate(depth.square()) - interpolated.square()
        # A probe ray with several surfaces (a thin rod in front of a wall) has no one depth either.
        spread = spread + interpolate(_depth_variance(weights, opacity))
        trust = torch.exp(-0.5 * spread.clamp_min(0.0) / depth_sigma**2)
        share = depth_share * trust * (hit_share > 0)
        mixture = (1.0 - share) * mixture + share * gaussian
    return normalize_distribution(mixture.movedim(1, -1)).movedim(-1, 1)


def _depth_variance(weights: Tensor, opacity: Tensor) -> Tensor:
    """Variance, in bins squared, of each probe ray's weights along depth."""
    centres = _bin_centres(weights)
    normalised = weights / opacity.clamp_min(1e-12)[:, None]
    mean = (normalised * centres).sum(dim=1)
    return ((normalised * centres.square()).sum(dim=1) - mean.square()).clamp_min(0.0)


def _bin_centres(weights: Tensor) -> Tensor:
    """Bin centres in bins, ``(1, num_bins, 1, 1)``, for weights ``(B, num_bins, h, w)``."""
    return torch.arange(weights.shape[1], device=weights.device, dtype=weights.dtype).view(1, -1, 1, 1) + 0.5
