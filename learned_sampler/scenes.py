"""Analytic test scenes: fields with exact, cheap ground truth for tests, examples and benchmarks.

Every scene lives inside a ball of radius 0.7 around the origin and is seen from cameras at EG3D's
radius 2.7 with a ``SCENE_FOV_DEGREES`` field of view that frames it whole, with depths in
``[SCENE_NEAR, SCENE_FAR]``. SDF scenes use
``volsdf_density`` with a tight ``beta`` and also return ``"sdf"`` and ``"beta"`` per sample; the
colours are textured so that sampling errors show up in the image.

* ``smooth_surface``: a bumpy opaque blob with a striped texture.
* ``thin_structures``: thin rods and a thin ring, a few samples wide or less.
* ``occluder``: a small sphere in front of a large one, so rays at its silhouette have bimodal
  weight distributions (depth discontinuities).
* ``fuzzy_volume``: semi-transparent Gaussian blobs, no surface at all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from learned_sampler.density import volsdf_density

SCENE_FOV_DEGREES = 36.0
"""Field of view (``intrinsics_from_fov`` convention) that frames a radius of ~0.6 at distance 2.7."""
SCENE_NEAR = 2.0
"""Near depth for the scenes' cameras (camera radius 2.7, scene radius <= 0.7)."""
SCENE_FAR = 3.4
"""Far depth for the scenes' cameras."""


def _texture(positions: Tensor, frequency: float) -> Tensor:
    """A smooth but high-frequency colour pattern in [0.05, 0.95]."""
    x, y, z = positions.unbind(-1)
    r = 0.5 + 0.45 * torch.sin(frequency * x + 1.3 * torch.sin(frequency * 0.5 * y))
    g = 0.5 + 0.45 * torch.sin(frequency * y + 0.7)
    b = 0.5 + 0.45 * torch.sin(frequency * z + 2.1 * torch.cos(frequency * 0.5 * x))
    return torch.stack([r, g, b], dim=-1)


def _sdf_outputs(sdf: Tensor, beta: float, rgb: Tensor) -> dict[str, Tensor]:
    beta_tensor = torch.full_like(sdf, beta)
    return {"density": volsdf_density(sdf, beta_tensor), "rgb": rgb, "sdf": sdf, "beta": beta_tensor}


def smooth_surface(beta: float = 0.002) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """A bumpy opaque blob of radius ~0.5 with a striped texture (tight beta)."""

    def field(positions: Tensor, directions: Tensor) -> dict[str, Tensor]:
        x, y, z = positions.unbind(-1)
        bumps = 0.03 * torch.sin(6.0 * x) * torch.sin(6.0 * y) * torch.sin(6.0 * z)
        sdf = positions.norm(dim=-1) - 0.5 - bumps
        return _sdf_outputs(sdf, beta, _texture(positions, 25.0))

    return field


def _segment_distance(positions: Tensor, start: tuple[float, ...], end: tuple[float, ...]) -> Tensor:
    a = positions.new_tensor(start)
    b = positions.new_tensor(end)
    ab = b - a
    h = ((positions - a) @ ab / (ab @ ab)).clamp(0.0, 1.0)
    return (positions - a - h[..., None] * ab).norm(dim=-1)


def thin_structures(beta: float = 0.002) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """Thin rods (radius 0.006 to 0.02) and a thin ring (minor radius 0.012)."""
    rods = [
        ((-0.5, -0.6, 0.0), (-0.5, 0.6, 0.0), 0.006),
        ((-0.25, -0.6, 0.1), (-0.25, 0.6, -0.1), 0.01),
        ((0.0, -0.6, 0.0), (0.0, 0.6, 0.0), 0.015),
        ((0.25, -0.6, -0.1), (0.25, 0.6, 0.1), 0.02),
        ((-0.6, 0.35, 0.05), (0.6, 0.35, 0.05), 0.008),
    ]

    def field(positions: Tensor, directions: Tensor) -> dict[str, Tensor]:
        sdf = None
        for start, end, radius in rods:
            rod = _segment_distance(positions, start, end) - radius
            sdf = rod if sdf is None else torch.minimum(sdf, rod)
        x, y, z = positions.unbind(-1)
        # A ring in the plane y = -0.3, facing the frontal camera at an angle.
        ring_xz = torch.sqrt(x**2 + (z - 0.1) ** 2 + 1e-12) - 0.4
        ring = torch.sqrt(ring_xz**2 + (y + 0.3) ** 2) - 0.012
        sdf = torch.minimum(sdf, ring)
        return _sdf_outputs(sdf, beta, _texture(positions, 18.0))

    return field


def occluder(beta: float = 0.002) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """A small sphere in front of a large one: silhouettes with two distant surfaces per pixel."""

    def field(positions: Tensor, directions: Tensor) -> dict[str, Tensor]:
        back = (positions - positions.new_tensor((0.0, 0.0, -0.35))).norm(dim=-1) - 0.45
        front_a = (positions - positions.new_tensor((0.12, 0.08, 0.5))).norm(dim=-1) - 0.12
        front_b = (positions - positions.new_tensor((-0.2, -0.15, 0.35))).norm(dim=-1) - 0.07
        sdf = torch.minimum(back, torch.minimum(front_a, front_b))
        rgb = _texture(positions, 20.0)
        in_front = (torch.minimum(front_a, front_b) < back)[..., None]
        rgb = torch.where(in_front, 1.0 - rgb, rgb)  # contrasting colours across the discontinuity
        return _sdf_outputs(sdf, beta, rgb)

    return field


def fuzzy_volume(peak_density: float = 12.0) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """Overlapping semi-transparent Gaussian blobs with a modulated density (no surface)."""
    blobs = [((0.0, 0.0, 0.0), 0.25, 1.0), ((0.25, 0.2, 0.15), 0.12, 1.5), ((-0.25, -0.15, -0.1), 0.15, 1.2)]

    def field(positions: Tensor, directions: Tensor) -> dict[str, Tensor]:
        density = torch.zeros_like(positions[..., 0])
        for centre, scale, gain in blobs:
            squared = ((positions - positions.new_tensor(centre)) ** 2).sum(dim=-1)
            density = density + gain * torch.exp(-0.5 * squared / scale**2)
        x, y, z = positions.unbind(-1)
        modulation = 0.6 + 0.4 * torch.sin(15.0 * x) * torch.cos(15.0 * y + 5.0 * z)
        return {"density": peak_density * density * modulation, "rgb": _texture(positions, 12.0)}

    return field


SCENES: dict[str, Callable[[], Callable[[Tensor, Tensor], dict[str, Tensor]]]] = {
    "smooth_surface": smooth_surface,
    "thin_structures": thin_structures,
    "occluder": occluder,
    "fuzzy_volume": fuzzy_volume,
}
"""Scene name -> constructor with default parameters."""


def make_scene(name: str) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """The analytic field of scene ``name`` (one of ``SCENES``)."""
    if name not in SCENES:
        raise ValueError(f"unknown scene {name!r}; choose from {sorted(SCENES)}")
    return SCENES[name]()

