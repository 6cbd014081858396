"""Ray spacings: how equal depth bins tile each ray's ``[near, far]``.

Samplers work in a normalised coordinate ``s`` in ``[0, 1]`` along each ray, in which bins,
strata and uniform samples are equal; a spacing maps it to metric depth ``t``:

* ``"linear"``: equal in depth, ``g(t) = t``. Bounded scenes (a box, EG3D's near/far).
* ``"disparity"``: equal in inverse depth, ``g(t) = -1 / t`` (``near > 0``). Fine near the camera,
  coarse far away.
* ``"lin-disp"``: nerfacto's piecewise spacing, ``g(t) = t`` up to ``t = 1`` and ``2 - 1 / t``
  beyond (continuous, with a continuous slope): linear over the scene near the cameras, equal in
  disparity out to a far bound in the distance. Unbounded captures, with a contracted field.

``s = (g(t) - g(near)) / (g(far) - g(near))``. Every function here works on any batch shape,
with ``nears`` / ``fars`` of the ray shape ``(*B,)`` and ``s`` / ``t`` of shape ``(*B, N)``.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor

from learned_sampler.intervals import RayIntervals

Spacing = Literal["linear", "disparity", "lin-disp"]
SPACINGS: tuple[str, ...] = get_args(Spacing)


def check_spacing(spacing: str, nears: Tensor | None = None) -> Spacing:
    """``spacing`` itself; ``ValueError`` for an unknown one, or for ``"disparity"`` with a near of 0."""
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    if spacing == "disparity" and nears is not None and bool((nears <= 0).any()):
        raise ValueError("the disparity spacing needs nears > 0 (1 / near must be finite)")
    return spacing  # type: ignore[return-value]


def _warp(t: Tensor, spacing: str) -> Tensor:
    """``g(t)``: the coordinate, before normalisation, in which the spacing is equal."""
    if spacing == "linear":
        return t
    if spacing == "disparity":
        return -1.0 / t
    return torch.where(t <= 1.0, t, 2.0 - 1.0 / t.clamp_min(1.0))


def _unwarp(x: Tensor, spacing: str) -> Tensor:
    """``g^-1(x)``."""
    if spacing == "linear":
        return x
    if spacing == "disparity":
        return -1.0 / x
    return torch.where(x <= 1.0, x, 1.0 / (2.0 - x.clamp(1.0, 2.0 - 1e-12)))


def spacing_to_depths(
    s: Float[Tensor, "*batch num"], nears: Float[Tensor, "*batch"], fars: Float[Tensor, "*batch"], spacing: Spacing
) -> Float[Tensor, "*batch num"]:
    """Metric depths of normalised positions ``s`` in ``[0, 1]``; exact at both ends."""
    check_spacing(spacing, nears)
    if spacing == "linear":
        return torch.lerp(nears[..., None].expand_as(s), fars[..., None].expand_as(s), s)
    low, high = _warp(nears, spacing)[..., None], _warp(fars, spacing)[..., None]
    t = _unwarp(low + s * (high - low), spacing)
    # The round trip through g can miss the bounds by an ulp: pin s = 0 and 1 to near and far.
    t = torch.where(s <= 0.0, nears[..., None].expand_as(t), t)
    t = torch.where(s >= 1.0, fars[..., None].expand_as(t), t)
    return torch.minimum(torch.maximum(t, nears[..., None]), fars[..., None])


def depths_to_spacing(
    t: Float[Tensor, "*batch num"], nears: Float[Tensor, "*batch"], fars: Float[Tensor, "*batch"], spacing: Spacing
) -> Float[Tensor, "*batch num"]:
    """Normalised positions in ``[0, 1]`` of metric depths ``t`` (clamped to ``[near, far]``)."""
    check_spacing(spacing, nears)
    t = torch.minimum(torch.maximum(t, nears[..., None]), fars[..., None])
    low, high = _warp(nears, spacing)[..., None], _warp(fars, spacing)[..., None]
    return ((_warp(t, spacing) - low) / (high - low)).clamp(0.0, 1.0)


def intervals_to_depths(
    intervals: RayIntervals, nears: Float[Tensor, "*batch"], fars: Float[Tensor, "*batch"], spacing: Spacing
) -> RayIntervals:
    """Intervals drawn in the normalised coordinate (over ``[0, 1]``) mapped to metric depth.

    A sample uniform inside its normalised interval stays inside the mapped one, at the depth its
    normalised position maps to; the mask is kept. Intervals carrying cached field outputs were
    evaluated at metric depths already and cannot be mapped."""
    if intervals.evaluated is not None or intervals.field_outputs is not None:
        raise ValueError("intervals with cached field outputs are already in metric depth")
    if spacing == "linear" and bool((nears == 0).all()) and bool((fars == 1).all()):
        return intervals

    def to_depths(s: Tensor) -> Tensor:
        return spacing_to_depths(s, nears, fars, spacing)

    return RayIntervals(to_depths(intervals.t_starts), to_depths(intervals.t_ends), to_depths(intervals.t_samples), intervals.mask)
