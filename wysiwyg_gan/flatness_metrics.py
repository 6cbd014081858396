"""Are generated objects 3D, or painted on a card?

* The non-flatness score (Skorokhodov et al. 2023): the entropy of the histogram of foreground
  depths in frontal depth maps; a flat card puts every pixel in a few bins, a 3D object spreads them.
* Frame relief (``frame_relief``): how far the nearest surface in the middle of a frontal view
  stands in front of the surface at the frame's border. On data with an opaque background
  (portraits), a generator that paints its object onto a wall (or a band across the frame) scores
  about 0; one that builds the object in front of it scores about the object's depth, and more
  where the border shows nothing (a background at infinity, or none).
* Opaque coverage (``opaque_fraction`` against ``foreground_fraction``): the share of pixels a
  generator renders opaque beside the share of real pixels that are not the empty background. A
  generator that paints its objects on a large dark surface covers far more of the frame than the
  objects do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from learned_sampler.validation import check_floating, check_positive_int
from wysiwyg_gan.inference import seed_batches
from wysiwyg_gan.orbit_cameras import FRONTAL, orbit_labels

if TYPE_CHECKING:
    from wysiwyg_gan.inference import TrainedGAN


def non_flatness_score(
    depth: Float[Tensor, "batch 1 height width"] | Float[Tensor, "batch height width"],
    mask: Bool[Tensor, "batch 1 height width"] | Float[Tensor, "batch 1 height width"] | Tensor | None = None,
    bins: int = 64,
) -> Float[Tensor, " batch"]:
    """Non-flatness score of each depth map: the entropy (nats) of the histogram of its foreground depths.

    After Skorokhodov et al. 2023 ("3D generation on ImageNet"): each image's foreground depth
    values are min-max normalised to [0, 1] over that image's foreground, binned into ``bins``
    equal bins, and the entropy ``-sum p ln p`` of the bin frequencies is the score; the paper
    reports the mean over images. A flat depth map (one value) scores 0, a uniform ramp
    ``ln(bins)`` (the maximum). The paper's exact units (log base) and bin count are not certain
    here, so absolute values are not comparable with its table: compare models with the same
    ``bins``. Min-max normalisation makes the score blind to the depth range (tiny noise on a flat
    map spreads over every bin), as in the original.

    ``mask`` selects the foreground (bool, or float > 0.5, e.g. opacity); ``None`` uses every
    pixel. An image without foreground scores NaN.
    """
    check_floating("depth", depth)
    check_positive_int("bins", bins)
    if depth.dim() == 4:
        if depth.shape[1] != 1:
            raise ValueError(f"depth must have shape (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
    elif depth.dim() != 3:
        raise ValueError(f"depth must have shape (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
    batch = depth.shape[0]
    values = depth.reshape(batch, -1).double()
    if mask is None:
        keep = torch.ones_like(values, dtype=torch.bool)
    else:
        if mask.numel() != depth.numel():
            raise ValueError(f"mask {tuple(mask.shape)} must have the shape of depth {tuple(depth.shape)}")
        keep = mask.reshape(batch, -1)
        keep = keep if keep.dtype == torch.bool else keep > 0.5
    keep = keep & torch.isfinite(values)
    low = torch.where(keep, values, math.inf).amin(dim=1, keepdim=True)
    high = torch.where(keep, values, -math.inf).amax(dim=1, keepdim=True)
    span = high - low
    normalised = torch.where(span > 0, (values - low) / span.clamp_min(1e-300), torch.zeros_like(values))
    normalised = torch.where(keep, normalised, torch.zeros_like(values)).clamp(0.0, 1.0)
    index = (normalised * bins).long().clamp_max(bins - 1)
    counts = torch.zeros(batch, bins, dtype=torch.float64, device=depth.device).scatter_add_(1, index, keep.double())
    total = counts.sum(dim=1, keepdim=True)
    frequency = counts / total.clamp_min(1.0)
    entropy = -torch.where(frequency > 0, frequency * frequency.log(), torch.zeros_like(frequency)).sum(dim=1)
    entropy = torch.where(total[:, 0] > 0, entropy, torch.full_like(entropy, math.nan))
    return entropy.to(depth.dtype)


@torch.no_grad()
def model_non_flatness(
    gan: TrainedGAN,
    seeds: Sequence[int],
    truncation_psi: float = 0.7,
    bins: int = 64,
    resolution: int | None = None,
    batch_size: int = 8,
    opacity_threshold: float = 0.5,
) -> dict:
    """``non_flatness_score`` of the frontal depth maps of ``seeds`` (foreground: opacity >
    ``opacity_threshold``); ``nfs`` is the mean over images with foreground."""
    resolution = resolution or gan.resolution
    scores: list[float] = []
    samples: list[float] = []
    for batch in seed_batches(list(seeds), batch_size):
        labels = orbit_labels(FRONTAL, FRONTAL, len(batch), gan.device)
        images = gan.render(gan.field(gan.mapping(gan.latents(batch), labels, truncation_psi)), labels, resolution)
        scores += non_flatness_score(images.depth, images.opacity > opacity_threshold, bins).tolist()
        samples.append(images.samples_per_ray)
    finite = [value for value in scores if math.isfinite(value)]
    return {
        "nfs": float(np.mean(finite)) if finite else math.nan,
        "images_with_foreground": len(finite),
        "per_seed": scores,
        "bins": bins,
        "samples_per_ray": float(np.mean(samples)),
    }


PAINTED_RELIEF = 0.1
"""World units (the triplane box's side is 1): a frame whose central surface stands less than this
in front of its border shows an object painted onto a wall rather than built in front of it."""


def frame_relief(
    depth: Float[Tensor, "batch 1 height width"],
    opacity: Float[Tensor, "batch 1 height width"],
    far: float,
    border: float = 0.125,
    quantile: float = 0.05,
    opacity_threshold: float = 0.5,
    min_border_share: float = 0.1,
) -> Float[Tensor, " batch"]:
    """Per image, the depth of the surface behind the object minus the ``quantile`` of the depths
    in the central square (half the side), in world units; pixels not more opaque than
    ``opacity_threshold`` count at ``far``, so a wall with a see-through hole where the object
    should be scores below 0. The surface behind is the median depth of the opaque pixels of the
    border ring (the outer ``border`` of the side) when at least ``min_border_share`` of the ring
    is opaque, else ``far`` (nothing behind): a wall or a band across the frame counts, a
    transparent border does not. NaN for an image with no opaque pixel. Expected depths along
    unit rays (``RenderedImages.depth``)."""
    check_floating("depth", depth)
    check_floating("opacity", opacity)
    if depth.dim() != 4 or depth.shape[1] != 1 or depth.numel() == 0 or opacity.shape != depth.shape:
        raise ValueError(
            f"depth and opacity must both have shape (B, 1, H, W), got {tuple(depth.shape)} and {tuple(opacity.shape)}"
        )
    if not 0 < border < 0.25:
        raise ValueError(f"border must be in (0, 0.25) of the side, got {border}")
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    height, width = depth.shape[-2:]
    opaque = opacity > opacity_threshold
    rows = torch.arange(height, device=depth.device)[:, None].expand(height, width)
    columns = torch.arange(width, device=depth.device)[None, :].expand(height, width)
    ring_rows, ring_columns = max(1, round(border * height)), max(1, round(border * width))
    ring = (rows < ring_rows) | (rows >= height - ring_rows) | (columns < ring_columns) | (columns >= width - ring_columns)
    centre = (
        (rows >= height // 4) & (rows < height - height // 4) & (columns >= width // 4) & (columns < width - width // 4)
    )
    ring_opaque = opaque[:, 0][:, ring]
    ring_depth = torch.where(ring_opaque, depth[:, 0][:, ring], torch.full_like(depth[:, 0][:, ring], math.nan))
    behind = torch.nanmedian(ring_depth, dim=1).values
    background = torch.where(ring_opaque.float().mean(dim=1) >= min_border_share, behind, torch.full_like(behind, far))
    surface = torch.where(opaque, depth, torch.full_like(depth, far))[:, 0]
    nearest = torch.quantile(surface[:, centre].double(), quantile, dim=1).to(depth.dtype)
    relief = background - nearest
    return torch.where(opaque.flatten(1).any(dim=1), relief, torch.full_like(relief, math.nan))


@torch.no_grad()
def model_frame_relief(
    gan: TrainedGAN,
    seeds: Sequence[int],
    truncation_psi: float = 0.7,
    resolution: int | None = None,
    batch_size: int = 8,
) -> dict:
    """``frame_relief`` of the frontal renders of ``seeds``: ``relief`` is the median over images
    that render something, ``painted`` the share of those standing less than ``PAINTED_RELIEF`` out
    of their border."""
    resolution = resolution or gan.resolution
    values: list[float] = []
    for batch in seed_batches(list(seeds), batch_size):
        labels = orbit_labels(FRONTAL, FRONTAL, len(batch), gan.device)
        images = gan.render(gan.field(gan.mapping(gan.latents(batch), labels, truncation_psi)), labels, resolution)
        values += frame_relief(images.depth, images.opacity, gan.config.render.far).tolist()
    finite = [value for value in values if math.isfinite(value)]
    return {
        "relief": float(np.median(finite)) if finite else math.nan,
        "painted": float(np.mean([value < PAINTED_RELIEF for value in finite])) if finite else math.nan,
        "per_seed": values,
    }


def opaque_fraction(opacity: Float[Tensor, "batch 1 height width"], threshold: float = 0.5) -> float:
    """Share of the pixels whose accumulated opacity is above ``threshold``."""
    check_floating("opacity", opacity)
    if opacity.dim() != 4 or opacity.shape[1] != 1 or opacity.numel() == 0:
        raise ValueError(f"opacity must have shape (B, 1, H, W), got {tuple(opacity.shape)}")
    return float((opacity > threshold).float().mean())


def foreground_fraction(images: Float[Tensor, "batch 3 height width"], tolerance: float = 0.05) -> float:
    """Share of the pixels of images in [-1, 1] that are not the black background (some channel
    above ``-1 + tolerance``): 1 for data with an opaque background."""
    check_floating("images", images)
    if images.dim() != 4 or images.shape[1] != 3 or images.numel() == 0:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    return float((images.amax(dim=1) > -1.0 + tolerance).float().mean())
