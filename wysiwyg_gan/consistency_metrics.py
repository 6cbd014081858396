"""Does a generated object look the same from every view? Two measures of 3D consistency.

* Multi-view photometric consistency (``multiview_consistency``): a second view is lifted to 3D by
  its depth, projected into the first (``warp_by_depth``) and compared with it where both see the
  same surface.
* Colour drift along an orbit (``orbit_colour_drift``): how much an object's mean foreground colour
  changes as the camera turns around it, beside the true objects' drift (``shape_colour_drift``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from learned_sampler import rays_from_cameras
from learned_sampler.validation import check_floating, check_last_dims, check_positive_int
from wysiwyg_gan.data.dataset import split_camera_labels
from wysiwyg_gan.inference import seed_batches
from wysiwyg_gan.orbit_cameras import FRONTAL, orbit_labels

if TYPE_CHECKING:
    from wysiwyg_gan.data.shapes import ShapeSpec
    from wysiwyg_gan.inference import TrainedGAN


def unproject_depth(
    depth: Float[Tensor, "batch 1 height width"] | Float[Tensor, "batch height width"], labels: Float[Tensor, "batch 25"]
) -> Float[Tensor, "batch height width 3"]:
    """World points ``origin + direction * depth`` of every pixel centre of EG3D cameras ``labels``.

    ``depth`` is the distance along the unit ray direction (``RenderedImages.depth``), with the
    rays of ``learned_sampler.rays_from_cameras``, exactly as ``wysiwyg_gan.rendering`` renders and
    ``render_depth_normals`` lifts pixels.
    """
    check_floating("depth", depth)
    depth = depth[:, 0] if depth.dim() == 4 else depth
    if depth.dim() != 3 or labels.shape != (depth.shape[0], 25):
        raise ValueError(f"need depth (B, [1,] H, W) and labels (B, 25), got {tuple(depth.shape)} and {tuple(labels.shape)}")
    cam2world, intrinsics = split_camera_labels(labels.to(depth.dtype))
    rays = rays_from_cameras(cam2world, intrinsics, depth.shape[1], depth.shape[2], 0.0, 1.0)
    return rays.origins + rays.directions * depth[..., None]


def project_points(
    points: Float[Tensor, "batch *shape 3"], labels: Float[Tensor, "batch 25"]
) -> tuple[Float[Tensor, "batch *shape 2"], Float[Tensor, "batch *shape"], Float[Tensor, "batch *shape"]]:
    """Project world points into EG3D cameras: normalised image coordinates ``(u, v)`` (pixel
    centres at ``(i + 0.5) / W``, the inverse of ``rays_from_cameras``), the distance from the
    camera centre (the renderer's depth) and the camera-space ``z`` (> 0 in front)."""
    check_last_dims("points", check_floating("points", points), (3,))
    batch = points.shape[0]
    if labels.shape != (batch, 25):
        raise ValueError(f"labels must have shape ({batch}, 25), got {tuple(labels.shape)}")
    cam2world, intrinsics = split_camera_labels(labels.to(points.dtype))
    world2cam = torch.linalg.inv(cam2world)
    flat = points.reshape(batch, -1, 3)
    camera = flat @ world2cam[:, :3, :3].transpose(1, 2) + world2cam[:, None, :3, 3]
    z = camera[..., 2]
    safe_z = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    x, y = camera[..., 0] / safe_z, camera[..., 1] / safe_z
    u = intrinsics[:, 0, 0, None] * x + intrinsics[:, 0, 1, None] * y + intrinsics[:, 0, 2, None]
    v = intrinsics[:, 1, 1, None] * y + intrinsics[:, 1, 2, None]
    distance = (flat - cam2world[:, None, :3, 3]).norm(dim=-1)
    shape = points.shape[:-1]
    return torch.stack([u, v], dim=-1).reshape(*shape, 2), distance.reshape(shape), z.reshape(shape)


@dataclass
class DepthWarp:
    """The destination view resampled at the projections of the source view's pixels."""

    warped_image: Float[Tensor, "batch channels height width"]
    """The destination image, bilinearly sampled where each source pixel's 3D point projects."""
    warped_depth: Float[Tensor, "batch 1 height width"]
    """The destination depth sampled there."""
    projected_depth: Float[Tensor, "batch 1 height width"]
    """Distance from the destination camera to each source pixel's 3D point."""
    valid: Bool[Tensor, "batch 1 height width"]
    """Source foreground, in front of and inside the destination image, on destination foreground,
    and not occluded there: ``|projected_depth - warped_depth| <= depth_tolerance`` and no surface of
    the 2x2 pixels around the projection is nearer than ``projected_depth - depth_tolerance``."""
    error: Float[Tensor, "batch 1 height width"]
    """Mean absolute difference over channels between the source image and ``warped_image``."""

    def mean_error(self) -> Float[Tensor, " batch"]:
        """Mean ``error`` over the valid pixels of each image (NaN where none is valid)."""
        valid = self.valid.to(self.error.dtype)
        count = valid.flatten(1).sum(1)
        total = (self.error * valid).flatten(1).sum(1)
        return torch.where(count > 0, total / count.clamp_min(1.0), torch.full_like(total, math.nan))

    def valid_fraction(self) -> Float[Tensor, " batch"]:
        return self.valid.flatten(1).float().mean(1)


def _footprint_min(depth: Tensor, uv: Tensor) -> Tensor:
    """The smallest of the 2x2 depths that bilinear sampling at ``uv`` mixes, ``(B, 1, H', W')``.

    Bilinear depth is unreliable at silhouettes (a foreground depth mixed with the background's
    far value can match a hidden point behind the surface); the nearest surface in the footprint
    is not.
    """
    height, width = depth.shape[-2:]
    padded = F.pad(depth, (1, 1, 1, 1), mode="replicate")
    corners = -F.max_pool2d(-padded, kernel_size=2, stride=1)  # (H + 1, W + 1): min around each pixel corner
    column = (uv[..., 0] * width).round().long().clamp(0, width)  # the corner nearest to the point
    row = (uv[..., 1] * height).round().long().clamp(0, height)
    flat = corners.flatten(2)  # (B, 1, (H + 1) (W + 1))
    index = (row * (width + 1) + column).flatten(1)[:, None]
    return flat.gather(2, index).reshape(uv.shape[0], 1, *uv.shape[1:-1])


def warp_by_depth(
    src_image: Float[Tensor, "batch channels height width"],
    src_depth: Float[Tensor, "batch 1 height width"],
    src_labels: Float[Tensor, "batch 25"],
    dst_image: Float[Tensor, "batch channels dst_height dst_width"],
    dst_depth: Float[Tensor, "batch 1 dst_height dst_width"],
    dst_labels: Float[Tensor, "batch 25"],
    src_mask: Tensor | None = None,
    dst_mask: Tensor | None = None,
    depth_tolerance: float = 0.03,
) -> DepthWarp:
    """Warp ``dst_image`` into the source view through the source depth.

    Every source pixel is lifted to 3D (``unproject_depth``), projected into the destination
    camera (``project_points``), and the destination image, depth and mask are sampled there
    bilinearly (``grid_sample``, pixel centres, border padding). Depths are distances along unit
    rays in world units (``RenderedImages.depth``); masks are bool or float (> 0.5 is foreground;
    ``None``: everything). For a scene seen consistently by both views the warped image equals the
    source image wherever ``valid``, up to bilinear interpolation.
    """
    for name, tensor in (("src_image", src_image), ("src_depth", src_depth), ("dst_image", dst_image), ("dst_depth", dst_depth)):
        check_floating(name, tensor)
        if tensor.dim() != 4:
            raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(tensor.shape)}")
    batch, _, height, width = src_image.shape
    if src_depth.shape != (batch, 1, height, width) or dst_depth.shape[:2] != (batch, 1):
        raise ValueError(f"depths must be (B, 1, H, W) like their images, got {tuple(src_depth.shape)}, {tuple(dst_depth.shape)}")
    if dst_image.shape[0] != batch or dst_image.shape[1] != src_image.shape[1] or dst_image.shape[2:] != dst_depth.shape[2:]:
        raise ValueError(f"dst_image {tuple(dst_image.shape)} does not match src_image {tuple(src_image.shape)} and dst_depth")

    def as_mask(mask: Tensor | None, like: Tensor) -> Tensor:
        if mask is None:
            return torch.ones_like(like)
        if mask.shape != like.shape:
            raise ValueError(f"mask {tuple(mask.shape)} must have the shape of its depth {tuple(like.shape)}")
        return mask.to(like.dtype)

    src_fore = as_mask(src_mask, src_depth) > 0.5
    dst_fore = as_mask(dst_mask, dst_depth)
    points = unproject_depth(src_depth, src_labels)
    uv, distance, z = project_points(points, dst_labels)
    grid = uv * 2.0 - 1.0  # align_corners=False: -1 and 1 are the image's outer edges
    stacked = torch.cat([dst_image, dst_depth, dst_fore], dim=1)
    sampled = F.grid_sample(stacked, grid.to(stacked.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    warped_image, warped_depth, warped_fore = sampled[:, :-2], sampled[:, -2:-1], sampled[:, -1:]
    inside = ((uv >= 0) & (uv <= 1)).all(dim=-1)[:, None] & (z[:, None] > 0)
    projected = distance[:, None].to(src_depth.dtype)
    nearest_surface = _footprint_min(dst_depth, uv)
    visible = ((projected - warped_depth).abs() <= depth_tolerance) & (projected <= nearest_surface + depth_tolerance)
    valid = src_fore & inside & (warped_fore > 0.5) & visible
    error = (src_image - warped_image).abs().mean(dim=1, keepdim=True)
    return DepthWarp(warped_image, warped_depth, projected, valid, error)


@torch.no_grad()
def multiview_consistency(
    gan: TrainedGAN,
    seeds: Sequence[int],
    yaw_offset: float = 0.35,
    pitch_offset: float = 0.0,
    truncation_psi: float = 0.7,
    resolution: int | None = None,
    batch_size: int = 8,
    depth_tolerance: float = 0.03,
    opacity_threshold: float = 0.5,
) -> dict:
    """Photometric error between a frontal render and a yawed render warped onto it by depth.

    For each seed the latent (conditioned on the frontal camera) is rendered from the frontal
    camera (the reference) and from the orbit camera at ``(pi/2 + yaw_offset, pi/2 +
    pitch_offset)``; ``warp_by_depth`` lifts the second view's pixels by its depth and samples the
    reference image where they land. The error is the mean absolute colour difference in [0, 1]
    units over pixels that are foreground in both views (opacity > ``opacity_threshold``) and not
    occluded (depths agree within ``depth_tolerance`` world units; 0.03 is ~2 pixels of a 64 px
    frontal view at EG3D's camera distance). ``error`` is the mean over seeds with any valid pixel.
    """
    resolution = resolution or gan.resolution
    per_seed: list[float] = []
    fractions: list[float] = []
    samples: list[float] = []
    for batch in seed_batches(list(seeds), batch_size):
        count = len(batch)
        reference = orbit_labels(FRONTAL, FRONTAL, count, gan.device)
        second = orbit_labels(FRONTAL + yaw_offset, FRONTAL + pitch_offset, count, gan.device)
        ws = gan.mapping(gan.latents(batch), reference, truncation_psi=truncation_psi)
        field = gan.field(ws)
        ref_images = gan.render(field, reference, resolution)
        src_images = gan.render(field, second, resolution)
        warp = warp_by_depth(
            (src_images.image + 1) / 2,
            src_images.depth,
            second,
            (ref_images.image + 1) / 2,
            ref_images.depth,
            reference,
            src_mask=src_images.opacity > opacity_threshold,
            dst_mask=(ref_images.opacity > opacity_threshold).float(),
            depth_tolerance=depth_tolerance,
        )
        per_seed += warp.mean_error().tolist()
        fractions += warp.valid_fraction().tolist()
        samples += [ref_images.samples_per_ray, src_images.samples_per_ray]
    finite = [value for value in per_seed if math.isfinite(value)]
    return {
        "error": float(np.mean(finite)) if finite else math.nan,
        "valid_fraction": float(np.mean(fractions)),
        "seeds_with_valid_pixels": len(finite),
        "per_seed": per_seed,
        "samples_per_ray": float(np.mean(samples)),
    }


def mean_foreground_colour(
    images: Float[Tensor, "*batch 3 height width"], opacities: Float[Tensor, "*batch 1 height width"], min_coverage: float = 1.0
) -> Float[Tensor, "*batch 3"]:
    """Opacity-weighted mean foreground colour of images composited over black, in their units.

    A pixel composited over black is ``opacity * surface colour`` (the GAN's renders mapped to
    [0, 1], and the synthetic dataset's), so ``sum(image) / sum(opacity)`` is the mean surface
    colour weighted by opacity. NaN where the summed opacity is below ``min_coverage`` pixels.
    """
    check_floating("images", images)
    check_floating("opacities", opacities)
    if images.dim() < 3 or images.shape[-3] != 3 or opacities.shape != (*images.shape[:-3], 1, *images.shape[-2:]):
        raise ValueError(
            f"need images (..., 3, H, W) and opacities (..., 1, H, W), got {tuple(images.shape)} and {tuple(opacities.shape)}"
        )
    coverage = opacities.sum(dim=(-3, -2, -1))
    colour = images.sum(dim=(-2, -1)) / coverage.clamp_min(1e-12)[..., None]
    return torch.where((coverage >= min_coverage)[..., None], colour, torch.full_like(colour, math.nan))


def colour_drift(
    images: Float[Tensor, "batch views 3 height width"],
    opacities: Float[Tensor, "batch views 1 height width"],
    min_coverage: float = 1.0,
) -> Float[Tensor, " batch"]:
    """How much the mean foreground colour of one object changes between views of it.

    ``images[b]`` are views of one object (colour in [0, 1], composited over black) and
    ``opacities[b]`` their coverage. Each view's ``mean_foreground_colour`` is compared with the
    object's average over its views: the drift is the mean over views of the Euclidean distance
    to that average, in [0, 1] RGB units (at most sqrt(3)). Identical views give exactly 0; NaN
    where a view has less than ``min_coverage`` pixels of foreground.
    """
    if images.dim() != 5:
        raise ValueError(f"images must have shape (B, V, 3, H, W), got {tuple(images.shape)}")
    colours = mean_foreground_colour(images, opacities, min_coverage).double()  # (B, V, 3)
    # Offsets from the first view make identical views exactly 0 (a mean of equal floats need not be).
    offsets = colours - colours[:, :1]
    return (offsets - offsets.mean(dim=1, keepdim=True)).norm(dim=-1).mean(dim=1).to(images.dtype)


def orbit_yaws(yaw_range: float, views: int) -> list[float]:
    """``views`` yaw offsets evenly spaced over ``[-yaw_range, yaw_range]`` (0 alone for one view)."""
    check_positive_int("views", views)
    return [yaw_range * (2 * view / (views - 1) - 1) for view in range(views)] if views > 1 else [0.0]


def _drift_summary(per_seed: list[float], yaws: list[float]) -> dict:
    finite = [value for value in per_seed if math.isfinite(value)]
    return {
        "drift": float(np.mean(finite)) if finite else math.nan,
        "seeds_with_foreground": len(finite),
        "per_seed": per_seed,
        "yaws": yaws,
    }


@torch.no_grad()
def orbit_colour_drift(
    gan: TrainedGAN,
    seeds: Sequence[int],
    yaw_range: float = 0.7,
    views: int = 7,
    pitch_offset: float = 0.0,
    truncation_psi: float = 0.7,
    resolution: int | None = None,
    batch_size: int = 8,
) -> dict:
    """``colour_drift`` of each latent rendered from ``views`` orbit cameras around the frontal one.

    The latent (conditioned on the frontal camera) is rendered at yaws ``pi/2 + orbit_yaws(yaw_range,
    views)`` and pitch ``pi/2 + pitch_offset``; the default spans +-0.7 rad (2 sigma of the synthetic
    dataset's yaw). ``drift`` is the mean over seeds whose views all have foreground. A 3D-consistent
    object under fixed lighting drifts only by shading; ``shape_colour_drift`` measures that for
    the synthetic dataset's true objects.
    """
    resolution = resolution or gan.resolution
    yaws = orbit_yaws(yaw_range, views)
    per_seed: list[float] = []
    samples: list[float] = []
    for batch in seed_batches(list(seeds), batch_size):
        count = len(batch)
        condition = orbit_labels(FRONTAL, FRONTAL, count, gan.device)
        field = gan.field(gan.mapping(gan.latents(batch), condition, truncation_psi=truncation_psi))
        images, opacities = [], []
        for yaw in yaws:
            rendered = gan.render(field, orbit_labels(FRONTAL + yaw, FRONTAL + pitch_offset, count, gan.device), resolution)
            images.append((rendered.image + 1) / 2)
            opacities.append(rendered.opacity)
            samples.append(rendered.samples_per_ray)
        per_seed += colour_drift(torch.stack(images, 1), torch.stack(opacities, 1)).tolist()
    return _drift_summary(per_seed, yaws) | {"samples_per_ray": float(np.mean(samples))}


def shape_colour_drift(
    specs: Sequence[ShapeSpec], yaw_range: float = 0.7, views: int = 7, pitch_offset: float = 0.0, resolution: int = 64
) -> dict:
    """``orbit_colour_drift``'s protocol on synthetic objects, rendered by the dataset's own
    renderer (``wysiwyg_gan.data.shape_rendering.render_shapes``): the drift of real,
    3D-consistent objects, which Lambertian shading under the fixed light makes slightly positive.
    A reference for the GAN's."""
    from wysiwyg_gan.data.shape_rendering import render_shapes

    if not specs:
        raise ValueError("specs must hold at least one ShapeSpec")
    yaws = orbit_yaws(yaw_range, views)
    labels = torch.cat([orbit_labels(FRONTAL + yaw, FRONTAL + pitch_offset, len(specs)) for yaw in yaws])
    rgb, coverage = render_shapes(list(specs) * len(yaws), labels, resolution)
    images = rgb.permute(0, 3, 1, 2).reshape(len(yaws), len(specs), 3, resolution, resolution).transpose(0, 1)
    opacities = coverage.reshape(len(yaws), len(specs), 1, resolution, resolution).transpose(0, 1)
    return _drift_summary(colour_drift(images, opacities).tolist(), yaws)

