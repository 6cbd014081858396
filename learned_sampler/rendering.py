"""Volume rendering (the paper's Eq. 2) over ``RayIntervals``.

For samples ``i`` of a ray with densities ``sigma_i`` and interval lengths ``delta_i``::

    alpha_i = 1 - exp(-sigma_i delta_i)
    T_i     = exp(-sum_{j<i} sigma_j delta_j)          (transmittance)
    w_i     = T_i alpha_i                                (weights)
    C       = sum_i w_i c_i                              (and the same for any per-sample value)

A *field* is any callable ``field(positions, directions) -> dict`` on tensors ``(*B, S, 3)`` that
returns ``"density"`` ``(*B, S)`` (per world unit) and ``"rgb"`` ``(*B, S, 3)``, plus optional
per-sample extras (``"beta"``, ``"sdf"``, ...) of shape ``(*B, S)`` or ``(*B, S, C)``. Fields
must be pointwise. When rays have two or more batch dimensions (image rays ``(B, H, W)``), the
first one is kept as the image index in every call, so a field with one set of features per image
(a triplane per generated image) can index it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field as dataclass_field

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from learned_sampler.validation import check_finite, check_floating, check_tensor
from learned_sampler.intervals import RayIntervals
from learned_sampler.rays import Rays

Field = Callable[[Tensor, Tensor], dict[str, Tensor]]
"""``field(positions (*B, S, 3), directions (*B, S, 3)) -> {"density": (*B, S), "rgb": (*B, S, 3), ...}``."""


def render_transmittance_from_density(
    deltas: Float[Tensor, "*batch num_samples"],
    densities: Float[Tensor, "*batch num_samples"],
) -> tuple[Float[Tensor, "*batch num_samples"], Float[Tensor, "*batch num_samples"]]:
    """Transmittance before each sample and opacity (alpha) of each sample.

    Args:
        deltas: interval lengths in world units (``>= 0``).
        densities: volume densities per world unit (``>= 0``).

    Returns:
        ``(transmittance, alphas)``, both ``(*B, S)``.
    """
    optical_depth = densities * deltas
    alphas = -torch.expm1(-optical_depth)  # accurate for tiny optical depths
    # Exclusive cumulative sum, so the first sample sees transmittance 1. Built by shifting the
    # inclusive sum (not by subtracting each term from it): the subtraction loses the earlier
    # terms when a later one is huge (0.5 + 1e8 - 1e8 = 0 in float32, weights summing past 1)
    # and gives inf - inf = NaN when an optical depth overflows.
    accumulated = torch.cat(
        [torch.zeros_like(optical_depth[..., :1]), torch.cumsum(optical_depth[..., :-1], dim=-1)], dim=-1
    )
    return torch.exp(-accumulated), alphas


def render_weights_from_density(
    deltas: Float[Tensor, "*batch num_samples"],
    densities: Float[Tensor, "*batch num_samples"],
) -> Float[Tensor, "*batch num_samples"]:
    """Volume rendering weights ``w_i = T_i alpha_i`` (they sum to the ray's opacity, <= 1)."""
    check_floating("deltas", deltas)
    check_floating("densities", densities)
    if deltas.shape != densities.shape:
        raise ValueError(
            f"deltas {tuple(deltas.shape)} and densities {tuple(densities.shape)} must have the same shape"
        )
    transmittance, alphas = render_transmittance_from_density(deltas, densities)
    return transmittance * alphas


def accumulate_along_rays(
    weights: Float[Tensor, "*batch num_samples"],
    values: Float[Tensor, "*batch num_samples channels"] | Float[Tensor, "*batch num_samples"],
) -> Float[Tensor, "*batch channels"] | Float[Tensor, "*batch"]:
    """Composite per-sample values with the weights: ``sum_i w_i v_i`` (scalar or vector values)."""
    if values.shape == weights.shape:
        return (weights * values).sum(dim=-1)
    if values.shape[:-1] != weights.shape:
        raise ValueError(
            f"values {tuple(values.shape)} must have shape (*B, S) or (*B, S, C) with (*B, S) = {tuple(weights.shape)}"
        )
    return (weights[..., None] * values).sum(dim=-2)


@dataclass
class RenderResult:
    """What ``render`` returns; ``*B`` is the ray batch shape and ``S`` the padded samples per ray."""

    rgb: Float[Tensor, "*batch 3"]
    """Composited colour (plus ``background * (1 - opacity)`` when a background is given)."""
    depth: Float[Tensor, "*batch"]
    """Expected depth of the visible content, ``sum w t / sum w``; ``far`` where a ray hits nothing."""
    opacity: Float[Tensor, "*batch"]
    """Accumulated opacity ``sum w`` in [0, 1]."""
    weights: Float[Tensor, "*batch num_samples"]
    """Per-sample weights (zero at padding samples)."""
    intervals: RayIntervals
    """The samples that were rendered."""
    extras: dict[str, Tensor] = dataclass_field(default_factory=dict)
    """Composited per-sample extras of the field (e.g. ``"beta"`` -> the surface-variance image B)."""
    sample_outputs: dict[str, Tensor] = dataclass_field(default_factory=dict)
    """Every field output per sample, ``(*B, S)`` or ``(*B, S, C)`` (zero at padding samples)."""
    samples_per_ray: float = 0.0
    """Mean number of field samples per ray used by this render (a sampler's own probe excluded)."""


def evaluate_field(field: Field, rays: Rays, intervals: RayIntervals) -> dict[str, Tensor]:
    """Field outputs at every sample, ``(*B, S)`` / ``(*B, S, C)``, evaluating only what is needed.

    Samples outside ``intervals.mask`` and samples in ``intervals.evaluated`` are not passed to the
    field; the former get zeros, the latter the sampler's cached outputs. When some samples are
    skipped, the field sees ``(B0, N, 3)`` per call, ``B0`` being the first ray batch dimension
    and ``N`` the samples of each image (padded to the largest image when images differ); rays with
    a single batch dimension are one group, ``(1, N, 3)``.
    """
    batch_shape = rays.batch_shape
    if intervals.batch_shape != batch_shape:
        raise ValueError(
            f"intervals batch shape {tuple(intervals.batch_shape)} does not match rays {tuple(batch_shape)}"
        )
    positions = rays.points_at(intervals.t_samples)
    directions = rays.directions[..., None, :].expand_as(positions)
    needed = intervals.mask
    if intervals.evaluated is not None:
        needed = ~intervals.evaluated if needed is None else needed & ~intervals.evaluated
    if needed is None:
        outputs = _call_field(field, positions, directions, positions.shape[:-1])
    else:
        outputs = _evaluate_subset(field, positions, directions, needed)
    if intervals.evaluated is not None and intervals.field_outputs is not None:
        for key, cached in intervals.field_outputs.items():
            if key in outputs:
                where = intervals.evaluated if cached.dim() == intervals.evaluated.dim() else intervals.evaluated[..., None]
                outputs[key] = torch.where(where, cached.to(outputs[key].dtype), outputs[key])
    return outputs


def _call_field(field: Field, positions: Tensor, directions: Tensor, sample_shape: torch.Size) -> dict[str, Tensor]:
    outputs = field(positions, directions)
    if not isinstance(outputs, dict):
        raise ValueError(f"a field must return a dict of tensors, got {type(outputs).__name__}")
    for key in ("density", "rgb"):
        if key not in outputs:
            raise ValueError(f"the field's output has no {key!r} entry (keys: {sorted(outputs)})")
    for key, value in outputs.items():
        check_tensor(f"field output {key!r}", value)
        if tuple(value.shape[: len(sample_shape)]) != tuple(sample_shape) or value.dim() > len(sample_shape) + 1:
            raise ValueError(
                f"field output {key!r} has shape {tuple(value.shape)}; expected {tuple(sample_shape)} "
                f"or {tuple(sample_shape)} + (C,)"
            )
    if outputs["rgb"].shape != (*sample_shape, 3):
        raise ValueError(f"field output 'rgb' must have shape {(*sample_shape, 3)}, got {tuple(outputs['rgb'].shape)}")
    if outputs["density"].shape != sample_shape:
        raise ValueError(
            f"field output 'density' must have shape {tuple(sample_shape)}, got {tuple(outputs['density'].shape)}"
        )
    return outputs


def _evaluate_subset(
    field: Field, positions: Tensor, directions: Tensor, needed: Bool[Tensor, "*batch num_samples"]
) -> dict[str, Tensor]:
    full_shape = needed.shape
    groups = full_shape[0] if needed.dim() >= 3 else 1
    needed_flat = needed.reshape(groups, -1)
    per_group = needed_flat.sum(dim=1)
    width = int(per_group.max()) if needed_flat.numel() else 0
    positions_flat = positions.reshape(groups, -1, 3)
    directions_flat = directions.reshape(groups, -1, 3)
    # Stable sort puts each group's needed samples first, in their original order.
    order = torch.argsort((~needed_flat).to(torch.uint8), dim=1, stable=True)[:, :width]
    gather_index = order[..., None].expand(-1, -1, 3)
    outputs = _call_field(
        field,
        torch.gather(positions_flat, 1, gather_index),
        torch.gather(directions_flat, 1, gather_index),
        torch.Size((groups, width)),
    )
    # Scatter back: padding columns of groups with fewer samples are dropped here.
    valid = torch.arange(width, device=needed.device)[None, :] < per_group[:, None]
    flat_targets = (order + torch.arange(groups, device=needed.device)[:, None] * needed_flat.shape[1])[valid]
    scattered = {}
    for key, value in outputs.items():
        channels = value.shape[2:]
        full = value.new_zeros((groups * needed_flat.shape[1], *channels))
        full = full.index_put((flat_targets,), value[valid])
        scattered[key] = full.reshape(*full_shape, *channels)
    return scattered


def render(
    rays: Rays,
    intervals: RayIntervals,
    field: Field,
    background: float | Tensor | None = None,
    composite: Sequence[str] | None = None,
) -> RenderResult:
    """Volume render ``field`` along ``rays`` at the samples in ``intervals``.

    Args:
        rays: the rays, batch ``(*B,)``.
        intervals: samples for these rays (from any sampler), batch ``(*B,)``.
        field: the radiance field (see the module docstring).
        background: colour behind the volume (a number, ``(3,)`` or ``(*B, 3)``); ``None`` leaves
            the composited colour as is (black background).
        composite: which per-sample extras to composite into ``extras``; ``None`` composites all.
    """
    outputs = evaluate_field(field, rays, intervals)
    density = outputs["density"]
    if intervals.mask is not None:
        density = torch.where(intervals.mask, density, torch.zeros_like(density))
    check_finite("field output 'density'", density.detach())
    if bool((density.detach() < 0).any()):
        raise ValueError("field output 'density' has negative values")
    weights = render_weights_from_density(intervals.deltas, density)
    opacity = weights.sum(dim=-1)
    rgb = accumulate_along_rays(weights, outputs["rgb"])
    if background is not None:
        background = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
        rgb = rgb + (1.0 - opacity)[..., None] * background
    expected = accumulate_along_rays(weights, intervals.t_samples)
    hit = opacity > 1e-10
    depth = torch.where(hit, expected / opacity.clamp_min(1e-10), rays.fars)
    depth = torch.minimum(torch.maximum(depth, rays.nears), rays.fars)
    extra_keys = [k for k in outputs if k not in ("density", "rgb")] if composite is None else list(composite)
    extras = {}
    for key in extra_keys:
        if key not in outputs:
            raise ValueError(f"cannot composite {key!r}: the field returned only {sorted(outputs)}")
        extras[key] = accumulate_along_rays(weights, outputs[key])
    num_rays = max(1, weights[..., 0].numel())
    return RenderResult(
        rgb=rgb,
        depth=depth,
        opacity=opacity,
        weights=weights,
        intervals=intervals,
        extras=extras,
        sample_outputs=outputs,
        samples_per_ray=float(intervals.samples_per_ray().sum()) / num_rays,
    )
