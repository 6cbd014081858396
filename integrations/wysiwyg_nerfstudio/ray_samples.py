"""From the learned sampler's ``RayIntervals`` to nerfstudio ``RaySamples``, and back to images.

* ``rays_from_bundle`` turns a (collided) nerfstudio ``RayBundle`` into ``learned_sampler.Rays``
  of any batch shape, e.g. ``(num_patches, P, P)`` for a batch of row-major patches.
* ``intervals_to_ray_samples`` fills nerfstudio's sample fields from the intervals: ``starts`` /
  ``ends`` are the interval edges (metric, along unit directions) and ``spacing_starts`` /
  ``spacing_ends`` the same edges in the normalised coordinate of the sampler's spacing over each
  ray's ``[near, far]`` (``learned_sampler.spacing``: where the bins are equal, e.g. linear in a
  bounded scene, nerfacto's lin-disp in an unbounded one), with ``spacing_to_euclidean_fn`` its
  inverse. Padding samples
  of rays with smaller adaptive budgets are zero-length intervals at ``far``: their weight is
  exactly zero, so nerfstudio's renderers and losses need no mask.
* ``evaluate_real_samples`` evaluates the field only at the real (unpadded) samples and scatters
  the outputs back, so the cost follows the mean budget (17.6), not the largest (32).
* ``last_real_sample_values`` picks each ray's deepest real sample's outputs (the
  ``"last_sample"`` background of padded intervals).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from learned_sampler import RayIntervals, Rays, Spacing, depths_to_spacing, spacing_to_depths
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.base_field import Field as NerfstudioField

MIN_DEPTH_RANGE = 1e-4
"""Smallest ``far - near`` (world units): rays missing the scene box get this empty range."""


def rays_from_bundle(ray_bundle: RayBundle, batch_shape: tuple[int, ...] | None = None) -> Rays:
    """``Rays`` with the bundle's origins, directions, nears and fars, reshaped to ``batch_shape``.

    The bundle must have been through a collider (``nears``/``fars`` set). Rays missing the scene
    box (``far <= near``) get ``far = near + MIN_DEPTH_RANGE``.
    """
    if ray_bundle.nears is None or ray_bundle.fars is None:
        raise ValueError("the ray bundle has no nears/fars: run the model's collider first")
    shape = tuple(ray_bundle.shape) if batch_shape is None else tuple(batch_shape)
    nears = ray_bundle.nears[..., 0].clamp_min(0.0)
    fars = torch.maximum(ray_bundle.fars[..., 0], nears + MIN_DEPTH_RANGE)
    return Rays(
        ray_bundle.origins.reshape(*shape, 3),
        ray_bundle.directions.reshape(*shape, 3),
        nears.reshape(shape),
        fars.reshape(shape),
    )


def intervals_to_ray_samples(
    ray_bundle: RayBundle, rays: Rays, intervals: RayIntervals, spacing: Spacing = "linear"
) -> RaySamples:
    """nerfstudio ``RaySamples`` ``(num_rays, S)`` for a flat bundle ``(num_rays,)`` and its intervals,
    whose bins tile each ray in ``spacing``."""
    num_rays = ray_bundle.shape[0] if len(ray_bundle.shape) == 1 else None
    if num_rays is None or intervals.t_starts.shape[0] != num_rays or intervals.t_starts.dim() != 2:
        raise ValueError(
            f"need a flat bundle (N,) and intervals (N, S); got {tuple(ray_bundle.shape)} and {tuple(intervals.t_starts.shape)}"
        )
    nears, fars = rays.nears.reshape(-1), rays.fars.reshape(-1)

    def to_spacing(t: Tensor) -> Tensor:
        return depths_to_spacing(t, nears, fars, spacing)[..., None]

    def spacing_to_euclidean(normalised: Tensor) -> Tensor:
        # nerfstudio calls this with (N, k) or (N, k, 1) spacings.
        if normalised.dim() == 3:
            return spacing_to_depths(normalised[..., 0], nears, fars, spacing)[..., None]
        return spacing_to_depths(normalised, nears, fars, spacing)

    return ray_bundle.get_ray_samples(
        bin_starts=intervals.t_starts[..., None],
        bin_ends=intervals.t_ends[..., None],
        spacing_starts=to_spacing(intervals.t_starts),
        spacing_ends=to_spacing(intervals.t_ends),
        spacing_to_euclidean_fn=spacing_to_euclidean,
    )


def evaluate_real_samples(
    field: NerfstudioField, ray_samples: RaySamples, mask: Bool[Tensor, "num_rays num_samples"] | None
) -> dict[FieldHeadNames, Float[Tensor, "num_rays num_samples channels"]]:
    """Field outputs at every sample, computed only where ``mask`` is set (zeros elsewhere)."""
    if mask is None or bool(mask.all()):
        return field(ray_samples)
    real = ray_samples[mask]  # (M,): a flat batch of the real samples
    outputs = field(real)
    scattered = {}
    for name, value in outputs.items():
        if not isinstance(value, Tensor) or value.shape[:1] != real.shape:
            continue
        full = value.new_zeros((*mask.shape, *value.shape[1:]))
        full[mask] = value
        scattered[name] = full
    return scattered


def last_real_sample_values(
    values: Float[Tensor, "num_rays num_samples channels"], mask: Bool[Tensor, "num_rays num_samples"] | None
) -> Float[Tensor, "num_rays channels"]:
    """``values`` at each ray's deepest real sample (real samples come first, sorted by depth).

    nerfstudio's ``"last_sample"`` background takes the last slot, which is padding for rays with
    fewer samples than the largest budget; this is that background for padded intervals.
    """
    if mask is None:
        return values[:, -1]
    last = (mask.sum(dim=-1) - 1).clamp_min(0)
    return values.gather(1, last[:, None, None].expand(-1, 1, values.shape[-1]))[:, 0]
