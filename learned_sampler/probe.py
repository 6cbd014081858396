"""The low-resolution probe (paper §4.2): uniform samples on rays at ``1/downscale`` resolution.

Its outputs feed the proposal CNN (colour and weights over depth bins) and the GAN's decision-
boundary loss (the field's values at the uniform samples). Cost accounting as in the paper:
``num_samples`` probe samples at ``1/r`` resolution cost ``num_samples / r^2`` samples per
full-resolution ray (192 at 128x128 = 12 per 512x512 ray).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from learned_sampler.validation import check_positive_int
from learned_sampler.rays import Rays, downsample_rays
from learned_sampler.rendering import Field, render
from learned_sampler.sampling import uniform_intervals
from learned_sampler.spacing import Spacing


@dataclass
class ProbeResult:
    """The probe of a batch of images at ``h x w = H/r x W/r``."""

    rgb: Float[Tensor, "batch 3 height width"]
    """Probe colour image (black background)."""
    weights: Float[Tensor, "batch num_bins height width"]
    """Volume rendering weights summed into ``num_bins`` equal depth bins of ``[near, far]``."""
    opacity: Float[Tensor, "batch height width"]
    """Accumulated opacity of each probe ray."""
    rays: Rays
    """The probe rays, batch ``(B, h, w)``."""
    sample_outputs: dict[str, Tensor]
    """Field outputs at every probe sample, ``(B, h, w, S)`` or ``(B, h, w, S, C)`` (e.g. ``"sdf"``
    for the decision-boundary loss); they keep their gradients."""
    samples_per_ray: float
    """Full-resolution equivalent cost: probe samples per probe ray / downscale^2."""


def render_probe(
    rays: Rays,
    field: Field,
    downscale: int,
    num_samples: int,
    num_bins: int,
    stratified: bool = True,
    generator: torch.Generator | None = None,
    spacing: Spacing = "linear",
) -> ProbeResult:
    """Render the probe for full-resolution image rays ``(B, H, W)``.

    Args:
        rays: full-resolution image rays; ``H`` and ``W`` must be divisible by ``downscale``.
        field: the radiance field.
        downscale: full-resolution / probe-resolution ratio (paper: 4).
        num_samples: uniform samples per probe ray (paper: 192); a multiple of ``num_bins``.
        num_bins: depth bins of the output weights.
        stratified: jitter the samples inside their intervals.
        generator: random generator for the jitter.
        spacing: how the samples and bins tile each ray (``learned_sampler.spacing``).
    """
    check_positive_int("downscale", downscale)
    check_positive_int("num_samples", num_samples)
    check_positive_int("num_bins", num_bins, minimum=2)
    if num_samples % num_bins:
        raise ValueError(f"num_samples ({num_samples}) must be a multiple of num_bins ({num_bins})")
    probe_rays = downsample_rays(rays, downscale)
    intervals = uniform_intervals(probe_rays.nears, probe_rays.fars, num_samples, stratified, generator, spacing)
    result = render(probe_rays, intervals, field)
    batch, height, width = probe_rays.batch_shape
    binned = result.weights.reshape(batch, height, width, num_bins, num_samples // num_bins).sum(dim=-1)
    return ProbeResult(
        rgb=result.rgb.permute(0, 3, 1, 2),
        weights=binned.permute(0, 3, 1, 2),
        opacity=result.opacity,
        rays=probe_rays,
        sample_outputs=result.sample_outputs,
        samples_per_ray=num_samples / downscale**2,
    )
