"""Rendering a generator's triplane field from EG3D camera labels, in the two modes of training.

* Two-pass (early stages): rays at the schedule's rendering resolution, sampled with EG3D's
  coarse + fine importance sampler (``learned_sampler.ImportanceSampler``).
* Learned sampler (later): probe + proposal CNN on the full-resolution rays, then robust
  stratified adaptive samples. When the rendering resolution is still below the full one the
  predicted distributions are area-downsampled to it, as the paper does (§4.6).

Images come out in [-1, 1] (black background -> -1), at the rendering resolution; the caller
upsamples them for the discriminator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from learned_sampler import (
    EG3D_RAY_FAR,
    EG3D_RAY_NEAR,
    ImportanceSampler,
    LearnedSampler,
    Proposal,
    Rays,
    RenderResult,
    render,
    rays_from_cameras,
)
from wysiwyg_gan.data.dataset import split_camera_labels
from wysiwyg_gan.networks.triplane import TriplaneField


@dataclass
class RenderConfig:
    """Ray bounds and the two-pass sampler of the early stages."""

    near: float = EG3D_RAY_NEAR
    """Ray start (EG3D FFHQ: 2.25; the camera is 2.7 from the origin)."""
    far: float = EG3D_RAY_FAR
    """Ray end (EG3D FFHQ: 3.3)."""
    coarse_samples: int = 48
    """Coarse samples of the two-pass sampler (the paper does not say; EG3D's 48)."""
    fine_samples: int = 48
    """Fine samples of the two-pass sampler (EG3D's 48)."""


@dataclass
class RenderedImages:
    """A batch of rendered images at ``(R, R)``, plus what the losses need."""

    image: Float[Tensor, "batch 3 res res"]
    """Colour in [-1, 1]."""
    depth: Float[Tensor, "batch 1 res res"]
    """Expected depth along the unit ray direction."""
    opacity: Float[Tensor, "batch 1 res res"]
    """Accumulated opacity."""
    surface_variance: Float[Tensor, "batch 1 res res"]
    """B: the volume-rendered beta (paper §4.5)."""
    samples_per_ray: float
    """Mean field samples per rendered ray (the probe excluded)."""
    uniform_sdf: Tensor | None = None
    """SDF at uniform samples along the rays, for L_dec: the probe's when rendering with the
    learned sampler, the coarse pass's in two-pass sampling."""
    uniform_free_space: Tensor | None = None
    """``free_space_mask`` at the same samples, laid out like ``uniform_sdf``."""
    proposal: Proposal | None = None
    """The sampler's prediction on the full-resolution rays, when the probe ran."""
    sampler_loss: Tensor | None = None
    """L_sampler of that prediction, when ``render_generator`` was asked to supervise the CNN."""


def free_space_mask(weights: Float[Tensor, "*rays samples"]) -> Float[Tensor, "*rays samples"]:
    """1 at the samples (or depth bins) after which a ray's transmittance is still above 1/2, 0
    from its visible surface on; ``weights`` are volume rendering weights in depth order. Detached:
    the mask chooses where L_dec acts and passes no gradient."""
    transmittance_after = 1.0 - weights.detach().cumsum(dim=-1)
    return (transmittance_after > 0.5).to(weights.dtype)


def camera_rays(labels: Float[Tensor, "batch 25"], resolution: int, config: RenderConfig) -> Rays:
    """Image rays ``(B, R, R)`` of EG3D camera labels between the configured near and far."""
    if labels.dim() != 2 or labels.shape[1] != 25:
        raise ValueError(f"camera labels must have shape (B, 25), got {tuple(labels.shape)}")
    cam2world, intrinsics = split_camera_labels(labels)
    return rays_from_cameras(cam2world, intrinsics, resolution, resolution, config.near, config.far)


def _to_images(result: RenderResult, rays: Rays) -> RenderedImages:
    batch, resolution = rays.origins.shape[:2]

    def image(x: Tensor) -> Tensor:
        return x.reshape(batch, resolution, resolution, -1).permute(0, 3, 1, 2)

    return RenderedImages(
        image=image(result.rgb) * 2.0 - 1.0,
        depth=image(result.depth[..., None]),
        opacity=image(result.opacity[..., None]),
        surface_variance=image(result.extras["beta"][..., None]),
        samples_per_ray=result.samples_per_ray,
    )


def render_two_pass(
    field: TriplaneField, labels: Float[Tensor, "batch 25"], resolution: int, config: RenderConfig, stratified: bool = True
) -> RenderedImages:
    """Render with EG3D's coarse + fine sampler at ``resolution``."""
    rays = camera_rays(labels, resolution, config)
    sampler = ImportanceSampler(config.coarse_samples, config.fine_samples, stratified=stratified)
    intervals = sampler.sample(rays, field)
    result = render(rays, intervals, field, composite=("beta",))
    images = _to_images(result, rays)
    images.uniform_sdf = intervals.field_outputs["sdf"][intervals.evaluated]
    images.uniform_free_space = free_space_mask(result.weights)[intervals.evaluated]
    return images


def predict_proposal(
    field: TriplaneField, labels: Float[Tensor, "batch 25"], full_resolution: int, sampler: LearnedSampler, config: RenderConfig
) -> tuple[Rays, Proposal]:
    """The probe and the CNN's distributions on the full-resolution rays."""
    rays = camera_rays(labels, full_resolution, config)
    return rays, sampler.predict(rays, field, field_gradients=torch.is_grad_enabled())


def render_with_proposal(
    field: TriplaneField,
    labels: Float[Tensor, "batch 25"],
    resolution: int,
    proposal: Proposal,
    sampler: LearnedSampler,
    config: RenderConfig,
    rays: Rays | None = None,
) -> RenderedImages:
    """Render at ``resolution`` with robust stratified samples from ``proposal``'s distributions
    (``rays``: the image rays at that resolution, when the caller already has them)."""
    distribution = proposal.distribution.detach()
    hit_probability = proposal.hit_probability
    full_resolution = distribution.shape[1]
    if resolution != full_resolution:
        channels_first = distribution.permute(0, 3, 1, 2)
        distribution = F.interpolate(channels_first, size=(resolution, resolution), mode="area").permute(0, 2, 3, 1)
        distribution = distribution / distribution.sum(-1, keepdim=True).clamp_min(1e-12)
        hit_probability = F.interpolate(hit_probability[:, None], size=(resolution, resolution), mode="area")[:, 0]
    if rays is None or rays.origins.shape[1] != resolution:
        rays = camera_rays(labels, resolution, config)
    intervals = sampler.sample_from_distribution(rays, distribution, hit_probability=hit_probability)
    result = render(rays, intervals, field, composite=("beta",))
    images = _to_images(result, rays)
    images.proposal = proposal
    images.uniform_sdf = proposal.probe.sample_outputs.get("sdf")
    if images.uniform_sdf is not None:
        # Per depth bin of the probe, each bin spanning the same number of its uniform samples.
        bins = free_space_mask(proposal.probe.weights.permute(0, 2, 3, 1))
        images.uniform_free_space = bins.repeat_interleave(images.uniform_sdf.shape[-1] // bins.shape[-1], dim=-1)
    return images


def render_generator(
    field: TriplaneField,
    labels: Float[Tensor, "batch 25"],
    resolution: int,
    sampler: LearnedSampler,
    config: RenderConfig,
    learned: bool,
    proposal_resolution: int | None = None,
    supervise_sampler: bool = False,
    probe_gradients: bool = False,
    stratified: bool = True,
) -> RenderedImages:
    """The one way the GAN renders, for training and for every tool: the learned sampler when
    ``learned`` (the schedule's choice), else two-pass sampling.

    The probe and CNN run on the rays at ``proposal_resolution`` (default ``resolution``; training
    predicts at the full resolution and renders below it while the schedule ramps up) only when
    their output is used: to render with, or for ``sampler_loss`` when ``supervise_sampler``.
    ``probe_gradients`` keeps the probe's graph (L_dec on its SDF); ``stratified`` jitters the
    two-pass samples (the learned sampler follows ``sampler.training``).
    """
    proposal = rays = sampler_loss = None
    if learned or supervise_sampler:
        proposal_resolution = proposal_resolution or resolution
        rays = camera_rays(labels, proposal_resolution, config)
        with torch.set_grad_enabled(torch.is_grad_enabled() and (probe_gradients or supervise_sampler)):
            proposal = sampler.predict(rays, field, field_gradients=probe_gradients)
            if supervise_sampler:
                sampler_loss = sampler.supervision_loss(rays, field, proposal)
    if learned:
        images = render_with_proposal(field, labels, resolution, proposal, sampler, config, rays)
    else:
        images = render_two_pass(field, labels, resolution, config, stratified)
    images.sampler_loss = sampler_loss
    return images


def render_depth_normals(
    field: TriplaneField, images: RenderedImages, labels: Float[Tensor, "batch 25"], config: RenderConfig
) -> Float[Tensor, "batch 3 res res"]:
    """World-space unit normals (SDF gradients) at the expected surface point of each pixel."""
    batch, _, resolution, _ = images.depth.shape
    rays = camera_rays(labels, resolution, config)
    depth = images.depth[:, 0]
    points = rays.origins + rays.directions * depth[..., None]
    normals = field.normals(points.reshape(batch, -1, 3)).reshape(batch, resolution, resolution, 3)
    return normals.permute(0, 3, 1, 2)
