"""An embedded procedural dataset: posed renders of random 3D objects with known geometry.

Every image shows one object, an analytic signed distance function (positive outside) from one of
a few families (sphere, ellipsoid, rounded box, torus, capsule, cylinder, and compounds of two
primitives blended by a smooth union), with a random size, orientation, position and colour. It
lies in the ball of radius ``OBJECT_RADIUS`` around the origin, so it is whole in the frame of
every orbit camera and well inside the GAN's ``[-0.5, 0.5]^3`` triplane box and EG3D's ray bounds.

Cameras follow EG3D's FFHQ setup with a frontal bias (``sample_camera_labels``). Images are sphere
traced in pure torch, shaded Lambertian under a fixed world-space light plus ambient (so shading
is consistent across views), on a black background (or an opaque backdrop, ``backdrop=True``), and
antialiased by supersampling.

``geometry.json`` beside ``dataset.json`` keeps each image's ``ShapeSpec``, the ground truth for
geometry metrics (``shape_sdf``, ``sample_surface_points``).
"""

from __future__ import annotations

import colorsys
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8
from torch import Tensor

from learned_sampler import (
    EG3D_CAMERA_RADIUS,
    EG3D_FOV_DEGREES,
    EG3D_RAY_FAR,
    EG3D_RAY_NEAR,
    intrinsics_from_fov,
    orbit_cameras,
    rays_from_cameras,
)
from learned_sampler.validation import check_positive_int
from wysiwyg_gan.data.dataset import (
    DATASET_JSON,
    DatasetError,
    _Source,
    camera_labels,
    split_camera_labels,
    write_dataset,
)

SYNTHETIC_VERSION = 1
"""Version of the generator; part of the cache folder name, bump it whenever the output changes."""
GEOMETRY_JSON = "geometry.json"
"""Name of the ground-truth file beside ``dataset.json``."""
DEFAULT_NUM_IMAGES = 2000
"""Images in the default dataset (25 to 30 s of one busy CPU core to generate at 64x64)."""
OBJECT_RADIUS = 0.3
"""Every sampled object lies in the ball of this radius around the origin.

An orbit camera at radius 2.7 with EG3D's field of view sees a ball of radius ~0.31 around the
pivot whole, so objects are never cropped.
"""
YAW_STD, YAW_LIMIT = 0.35, 1.05
"""Standard deviation and clip (3 sigma) of the camera yaw around the frontal view, radians."""
PITCH_STD, PITCH_LIMIT = 0.15, 0.45
"""Standard deviation and clip (3 sigma) of the camera pitch around the frontal view, radians."""
LIGHT_DIRECTION = (0.0, 0.6, 0.8)
"""Direction towards the light (world, y up): above the frontal camera. It lies in the ``x = 0``
plane, so a mirrored render is exactly the render of the mirrored object from the mirrored camera,
and x-flip augmentation stays physically consistent."""
AMBIENT, DIFFUSE = 0.3, 0.7
"""Shading: ``colour * (AMBIENT + DIFFUSE * max(0, normal . light))``."""
SUPERSAMPLE = 2
"""Rays per pixel side when rendering datasets (2x2 rays, box-filtered)."""

_HIT_EPSILON = 5e-4  # sphere tracing stops below this distance (a 64x64 pixel is ~1e-2 wide)
_LOOSE_EPSILON = 2e-3  # a ray still marching after the last step counts as a hit below this
_MAX_STEPS = 96
_RENDER_CHUNK = 16  # images traced together (their rays share one batch of tensors)


def _norm(vectors: Tensor) -> Tensor:
    """Euclidean norm of the last dimension (its gradient at zero is zero, not NaN)."""
    return torch.linalg.vector_norm(vectors, dim=-1)


def _inside_part(d: Tensor) -> Tensor:
    """``min(d, 0)`` whose derivative at ``d = 0`` is 1: on a flat face the inside term carries the
    SDF's gradient (``clamp_max``'s derivative at the boundary differs between torch versions)."""
    return torch.where(d <= 0, d, torch.zeros_like(d))


def _xz(p: Tensor) -> Tensor:
    return torch.stack([p[..., 0], p[..., 2]], dim=-1)


# ----- shape families: SDFs in the object's local frame; every parameter is a length -----


def _sphere(p: Tensor, q: dict[str, Tensor]) -> Tensor:
    return _norm(p) - q["radius"]


def _ellipsoid(p: Tensor, q: dict[str, Tensor]) -> Tensor:
    radii = torch.stack([q["radius_x"], q["radius_y"], q["radius_z"]], dim=-1)
    # (|p / r| - 1) * min(r): exact zero set and a 1-Lipschitz bound, safe for sphere tracing.
    return (_norm(p / radii) - 1.0) * radii.amin(dim=-1)


def _rounded_box(p: Tensor, q: dict[str, Tensor]) -> Tensor:
    half = torch.stack([q["half_x"], q["half_y"], q["half_z"]], dim=-1)
    d = p.abs() - half
    return _norm(d.clamp_min(0.0)) + _inside_part(d.amax(dim=-1)) - q["rounding"]


def _torus(p: Tensor, q: dict[str, Tensor]) -> Tensor:
    ring = _norm(_xz(p)) - q["major_radius"]  # the ring lies in the local xz plane
    return _norm(torch.stack([ring, p[..., 1]], dim=-1)) - q["minor_radius"]


def _capsule(p: Tensor, q: dict[str, Tensor]) -> Tensor:
    # Distance to the segment from -half_length to +half_length on the local y axis.
    axial = p[..., 1] - p[..., 1].clamp(-q["half_length"], q["half_length"])
    return _norm(torch.stack([p[..., 0], axial, p[..., 2]], dim=-1)) - q["radius"]


def _cylinder(p: Tensor, q: dict[str, Tensor]) -> Tensor:
    d = torch.stack([_norm(_xz(p)) - q["radius"], p[..., 1].abs() - q["half_height"]], dim=-1)
    return _norm(d.clamp_min(0.0)) + _inside_part(d.amax(dim=-1))


@dataclass(frozen=True)
class _Family:
    sdf: Callable[[Tensor, dict[str, Tensor]], Tensor]
    extent: Callable[[dict[str, float]], tuple[float, float, float]]
    """Half-sides of a local-axis-aligned box around the local origin that holds the shape."""
    bound: Callable[[dict[str, float]], float]
    """Radius of a ball around the local origin that holds the shape."""
    proportions: dict[str, tuple[float, float]]
    """Uniform ranges of the parameters before the shape is scaled to its size."""


def _box_half(q: dict[str, float]) -> tuple[float, float, float]:
    return (q["half_x"] + q["rounding"], q["half_y"] + q["rounding"], q["half_z"] + q["rounding"])


_FAMILIES: dict[str, _Family] = {
    "sphere": _Family(
        _sphere, lambda q: (q["radius"],) * 3, lambda q: q["radius"], {"radius": (1.0, 1.0)}
    ),
    "ellipsoid": _Family(
        _ellipsoid,
        lambda q: (q["radius_x"], q["radius_y"], q["radius_z"]),
        lambda q: max(q["radius_x"], q["radius_y"], q["radius_z"]),
        {"radius_x": (0.4, 1.0), "radius_y": (0.4, 1.0), "radius_z": (0.4, 1.0)},
    ),
    "rounded_box": _Family(
        _rounded_box,
        _box_half,
        lambda q: math.hypot(q["half_x"], q["half_y"], q["half_z"]) + q["rounding"],
        {"half_x": (0.35, 1.0), "half_y": (0.35, 1.0), "half_z": (0.35, 1.0), "rounding": (0.05, 0.25)},
    ),
    "torus": _Family(
        _torus,
        lambda q: (q["major_radius"] + q["minor_radius"], q["minor_radius"], q["major_radius"] + q["minor_radius"]),
        lambda q: q["major_radius"] + q["minor_radius"],
        {"major_radius": (1.0, 1.0), "minor_radius": (0.25, 0.5)},
    ),
    "capsule": _Family(
        _capsule,
        lambda q: (q["radius"], q["half_length"] + q["radius"], q["radius"]),
        lambda q: q["half_length"] + q["radius"],
        {"half_length": (0.3, 1.0), "radius": (0.3, 0.6)},
    ),
    "cylinder": _Family(
        _cylinder,
        lambda q: (q["radius"], q["half_height"], q["radius"]),
        lambda q: math.hypot(q["radius"], q["half_height"]),
        {"radius": (0.4, 1.0), "half_height": (0.4, 1.0)},
    ),
}
COMPOUND = "compound"
"""Family of a smooth union of parts; its one parameter ``blend`` is the union's smoothing length."""
FAMILIES = (*_FAMILIES, COMPOUND)
"""Every shape family; ``sample_shape_spec`` draws them with equal probability."""


@dataclass(frozen=True)
class ShapeSpec:
    """One object: a family's SDF with parameters, placed by a rotation and translation, coloured.

    A world point ``p`` is at ``rotation^T (p - translation)`` in the object's local frame. A
    compound's ``parts`` are ShapeSpecs placed in the compound's local frame; its surface colour is
    its parts' colours, blended like their SDFs, times its own ``colour`` (a tint).
    """

    family: str
    """One of ``FAMILIES``."""
    parameters: dict[str, float]
    """The family's lengths (world units), e.g. ``{"radius": 0.2}`` for a sphere."""
    rotation: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    """Rotation matrix (3x3, rows) from the local frame to the world."""
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Position of the local origin in the world."""
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Diffuse RGB albedo in [0, 1]."""
    parts: tuple[ShapeSpec, ...] = field(default=())
    """The parts of a compound (two or more); empty for the other families."""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown shape family {self.family!r}; choose from {FAMILIES}")
        expected = ("blend",) if self.family == COMPOUND else tuple(_FAMILIES[self.family].proportions)
        if set(self.parameters) != set(expected):
            raise ValueError(f"{self.family} needs parameters {sorted(expected)}, got {sorted(self.parameters)}")
        if not all(math.isfinite(value) and value > 0 for value in self.parameters.values()):
            raise ValueError(f"{self.family} parameters must be finite and > 0, got {self.parameters}")
        rotation = np.asarray(self.rotation, dtype=np.float64)
        orthonormal = rotation.shape == (3, 3) and np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
        if not orthonormal or np.linalg.det(rotation) < 0:
            raise ValueError(f"rotation must be a 3x3 rotation matrix, got {self.rotation}")
        if len(self.translation) != 3 or not all(math.isfinite(value) for value in self.translation):
            raise ValueError(f"translation must be 3 finite numbers, got {self.translation}")
        if len(self.colour) != 3 or not all(0.0 <= value <= 1.0 for value in self.colour):
            raise ValueError(f"colour must be 3 numbers in [0, 1], got {self.colour}")
        if (self.family == COMPOUND) != bool(self.parts) or (self.parts and len(self.parts) < 2):
            raise ValueError("a compound needs two or more parts, and only compounds have parts")

    def bound(self) -> float:
        """Radius of a ball around ``translation`` that holds the shape."""
        if self.family == COMPOUND:
            # The polynomial smooth union grows the shape by at most blend / 4.
            reach = max(math.hypot(*part.translation) + part.bound() for part in self.parts)
            return reach + self.parameters["blend"] / 4
        return _FAMILIES[self.family].bound(self.parameters)

    def extent(self) -> tuple[float, float, float]:
        """Half-sides of a box around ``translation``, aligned with the local axes, that holds the shape."""
        if self.family == COMPOUND:
            return (self.bound(),) * 3
        return _FAMILIES[self.family].extent(self.parameters)

    def structure(self) -> tuple:
        """What specs must share to be evaluated as one batch: the families of the shape tree."""
        return (self.family, tuple(part.structure() for part in self.parts))

    def to_dict(self) -> dict:
        """A JSON-serialisable description; ``ShapeSpec.from_dict`` inverts it."""
        return {
            "family": self.family,
            "parameters": dict(self.parameters),
            "rotation": [list(row) for row in self.rotation],
            "translation": list(self.translation),
            "colour": list(self.colour),
            "parts": [part.to_dict() for part in self.parts],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ShapeSpec:
        return cls(
            family=data["family"],
            parameters={key: float(value) for key, value in data["parameters"].items()},
            rotation=tuple(tuple(float(value) for value in row) for row in data["rotation"]),
            translation=tuple(float(value) for value in data["translation"]),
            colour=tuple(float(value) for value in data["colour"]),
            parts=tuple(cls.from_dict(part) for part in data.get("parts", [])),
        )


# ----- batched evaluation: the specs of one structure stacked into tensors -----


@dataclass
class _ShapeTensors:
    """ShapeSpecs of one structure stacked along a leading batch dimension (or one per ray)."""

    family: str
    parameters: dict[str, Tensor]  # (B,) each
    rotation: Tensor  # (B, 3, 3)
    translation: Tensor  # (B, 3)
    colour: Tensor  # (B, 3)
    parts: tuple[_ShapeTensors, ...]

    @classmethod
    def stack(cls, specs: Sequence[ShapeSpec], dtype: torch.dtype = torch.float32) -> _ShapeTensors:
        if len({spec.structure() for spec in specs}) != 1:
            raise ValueError("only specs of one structure can be stacked")
        first = specs[0]
        return cls(
            family=first.family,
            parameters={
                key: torch.tensor([spec.parameters[key] for spec in specs], dtype=dtype) for key in first.parameters
            },
            rotation=torch.tensor([spec.rotation for spec in specs], dtype=dtype),
            translation=torch.tensor([spec.translation for spec in specs], dtype=dtype),
            colour=torch.tensor([spec.colour for spec in specs], dtype=dtype),
            parts=tuple(cls.stack([spec.parts[i] for spec in specs], dtype) for i in range(len(first.parts))),
        )

    def index(self, index: Tensor) -> _ShapeTensors:
        """Select batch entries, e.g. each ray's object."""
        return _ShapeTensors(
            family=self.family,
            parameters={key: value[index] for key, value in self.parameters.items()},
            rotation=self.rotation[index],
            translation=self.translation[index],
            colour=self.colour[index],
            parts=tuple(part.index(index) for part in self.parts),
        )


def _to_local(points: Tensor, rotation: Tensor, translation: Tensor) -> Tensor:
    """``rotation^T (points - translation)`` with row vectors; batch dimensions broadcast."""
    return ((points - translation).unsqueeze(-2) @ rotation).squeeze(-2)


def _evaluate_local(shape: _ShapeTensors, local: Tensor, with_colour: bool) -> tuple[Tensor, Tensor | None]:
    """SDF (and surface colour) of shapes at points in their local frames; batch dims broadcast."""
    if shape.family != COMPOUND:
        colour = shape.colour.expand(local.shape) if with_colour else None
        return _FAMILIES[shape.family].sdf(local, shape.parameters), colour
    blend = shape.parameters["blend"]
    sdf, colour = None, None
    for part in shape.parts:
        part_sdf, part_colour = _evaluate_local(part, _to_local(local, part.rotation, part.translation), with_colour)
        if sdf is None:
            sdf, colour = part_sdf, part_colour
            continue
        # Polynomial smooth minimum: its gradient is a convex combination of the parts' gradients,
        # so it stays 1-Lipschitz; ``weight`` is the share of the union so far.
        weight = (0.5 + 0.5 * (part_sdf - sdf) / blend).clamp(0.0, 1.0)
        sdf = part_sdf + weight * (sdf - part_sdf) - blend * weight * (1.0 - weight)
        if with_colour:
            colour = part_colour + weight[..., None] * (colour - part_colour)
    return sdf, (colour * shape.colour if with_colour else None)


def shape_sdf(spec: ShapeSpec, points: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch"]:
    """Signed distance (positive outside) of an object at world points.

    Exact for every family but the ellipsoid and the blend region of compounds, where it is a
    1-Lipschitz bound with the exact zero level set.
    """
    if not points.is_floating_point() or points.shape[-1:] != (3,):
        raise ValueError(f"points must be a floating-point (..., 3) tensor, got {points.dtype} {tuple(points.shape)}")
    shape = _ShapeTensors.stack([spec], points.dtype)
    flat = points.reshape(-1, 3)
    sdf, _ = _evaluate_local(shape, _to_local(flat, shape.rotation, shape.translation), with_colour=False)
    return sdf.reshape(points.shape[:-1])


def _sdf_and_gradient(spec_tensors: _ShapeTensors, local: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        local = local.detach().requires_grad_(True)
        sdf, _ = _evaluate_local(spec_tensors, local, with_colour=False)
        (gradient,) = torch.autograd.grad(sdf.sum(), local)
    return sdf.detach(), gradient


def sample_surface_points(
    spec: ShapeSpec, num_points: int, generator: torch.Generator | None = None
) -> tuple[Float[Tensor, "num_points 3"], Float[Tensor, "num_points 3"]]:
    """Points spread uniformly (to first order) over an object's surface, and their outward unit normals.

    Candidates are drawn uniformly in the bounding cube and kept in a thin shell around the zero
    level set (distance estimated as ``sdf / |grad sdf|``); a uniform density in a thin shell is a
    uniform density over the surface. Newton steps along the gradient then project them onto it.
    Float32, in world coordinates; for chamfer distance and normal consistency metrics.
    """
    check_positive_int("num_points", num_points)
    shape = _ShapeTensors.stack([spec], torch.float64)  # float64 so the projection converges tightly
    half_width = spec.bound() + 0.01
    shell = 5e-3 * half_width
    kept: list[Tensor] = []
    count = 0
    for _ in range(1000):
        candidates = (torch.rand(2**16, 3, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * half_width
        sdf, gradient = _sdf_and_gradient(shape, candidates)
        near = (sdf / _norm(gradient)).abs() < shell
        kept.append(candidates[near])
        count += int(near.sum())
        if count >= num_points:
            break
    else:
        raise ValueError(f"could not find the surface of {spec.family} within its bound {spec.bound():.3g}")
    local = torch.cat(kept)[:num_points]
    for _ in range(8):
        sdf, gradient = _sdf_and_gradient(shape, local)
        local = local - (sdf / (gradient * gradient).sum(-1).clamp_min(1e-18))[:, None] * gradient
    _, gradient = _sdf_and_gradient(shape, local)
    rotation, translation = shape.rotation[0], shape.translation[0]
    points = local @ rotation.T + translation
    normals = F.normalize(gradient, dim=-1) @ rotation.T
    return points.float(), normals.float()


# ----- random objects and cameras -----


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _random_rotation(generator: torch.Generator) -> tuple[tuple[float, float, float], ...]:
    """A uniformly distributed rotation (from a normalised Gaussian quaternion)."""
    w, x, y, z = F.normalize(torch.randn(4, generator=generator, dtype=torch.float64), dim=0).tolist()
    return (
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    )


def _random_colour(generator: torch.Generator) -> tuple[float, float, float]:
    hue, saturation, value = _uniform(generator, 0, 1), _uniform(generator, 0.35, 0.9), _uniform(generator, 0.6, 1.0)
    return colorsys.hsv_to_rgb(hue, saturation, value)


def _random_offset(generator: torch.Generator, radius: float) -> tuple[float, float, float]:
    """A point uniform in the ball of ``radius`` around the origin."""
    direction = F.normalize(torch.randn(3, generator=generator, dtype=torch.float64), dim=0)
    return tuple((direction * radius * _uniform(generator, 0, 1) ** (1 / 3)).tolist())


def _scaled(spec: ShapeSpec, factor: float) -> ShapeSpec:
    """The shape scaled by ``factor`` about its local origin (every parameter is a length)."""
    return replace(
        spec,
        parameters={key: value * factor for key, value in spec.parameters.items()},
        parts=tuple(
            replace(_scaled(part, factor), translation=tuple(value * factor for value in part.translation))
            for part in spec.parts
        ),
    )


def _random_primitive(generator: torch.Generator, family: str, size: float) -> ShapeSpec:
    """A primitive of ``family`` scaled so that its bound is ``size``, centred, randomly rotated."""
    proportions = {key: _uniform(generator, *limits) for key, limits in _FAMILIES[family].proportions.items()}
    spec = ShapeSpec(family, proportions, rotation=_random_rotation(generator), colour=_random_colour(generator))
    return _scaled(spec, size / spec.bound())


def sample_shape_spec(generator: torch.Generator | None = None) -> ShapeSpec:
    """A random object, inside the ball of radius ``OBJECT_RADIUS`` (families equally likely).

    Its bound is 0.2 to 0.27 (its bounding ball spans 60% to 85% of the image width), its centre
    is within ``OBJECT_RADIUS`` minus that of the origin, and its colour is a random saturated hue. A
    compound is two primitives, offset along a random direction, blended by a smooth union.
    """
    generator = generator if generator is not None else torch.default_generator
    family = FAMILIES[int(torch.randint(len(FAMILIES), (), generator=generator))]
    size = _uniform(generator, 0.2, 0.27)
    if family == COMPOUND:
        primitives = tuple(_FAMILIES)
        axis = _random_offset(generator, 1.0)
        axis_length = math.hypot(*axis)
        parts = []
        for sign in (1.0, -1.0):
            part_family = primitives[int(torch.randint(len(primitives), (), generator=generator))]
            part = _random_primitive(generator, part_family, _uniform(generator, 0.5, 0.7))
            distance = _uniform(generator, 0.2, 0.45)
            parts.append(replace(part, translation=tuple(sign * distance * value / axis_length for value in axis)))
        blend = {"blend": _uniform(generator, 0.1, 0.3)}
        spec = ShapeSpec(COMPOUND, blend, rotation=_random_rotation(generator), parts=tuple(parts))
        spec = _scaled(spec, size / spec.bound())
    else:
        spec = _random_primitive(generator, family, size)
    return replace(spec, translation=_random_offset(generator, OBJECT_RADIUS - size))


def sample_camera_labels(num_cameras: int, generator: torch.Generator | None = None) -> Float[Tensor, "num_cameras 25"]:
    """EG3D labels of random orbit cameras with a frontal bias like FFHQ's.

    ``yaw = pi/2 + N(0, YAW_STD)`` and ``pitch = pi/2 + N(0, PITCH_STD)``, each offset clipped at
    3 sigma; radius 2.7 around the origin; EG3D's field of view.
    """
    check_positive_int("num_cameras", num_cameras)
    yaw = math.pi / 2 + (YAW_STD * torch.randn(num_cameras, generator=generator)).clamp(-YAW_LIMIT, YAW_LIMIT)
    pitch = math.pi / 2 + (PITCH_STD * torch.randn(num_cameras, generator=generator)).clamp(-PITCH_LIMIT, PITCH_LIMIT)
    cam2world = orbit_cameras(yaw, pitch, radius=EG3D_CAMERA_RADIUS)
    return camera_labels(cam2world, intrinsics_from_fov(EG3D_FOV_DEGREES, num_cameras))


# ----- rendering -----


def _trace(
    shape: _ShapeTensors, origins: Tensor, directions: Tensor, near: Tensor, far: Tensor
) -> tuple[Tensor, Tensor]:
    """Sphere trace rays (local frames, one object each) from ``near`` to ``far``; (hit, depth).

    Finished rays are dropped from the batch now and then (a gather costs about one SDF step);
    results are written back for the whole batch at each such compaction.
    """
    hit = torch.zeros_like(near, dtype=torch.bool)
    depth = near.clone()
    ids = torch.arange(len(near))
    o, d, t, t_far, s_shape = origins, directions, near.clone(), far, shape
    converged = torch.zeros_like(hit)
    active = torch.ones_like(hit)
    for step in range(_MAX_STEPS):
        sdf, _ = _evaluate_local(s_shape, o + t[:, None] * d, with_colour=False)
        if step == _MAX_STEPS - 1:  # rays still marching pass very close to the surface (grazing)
            converged |= active & (sdf < _LOOSE_EPSILON)
            break
        converged |= active & (sdf < _HIT_EPSILON)
        active &= ~converged & (t + sdf < t_far)
        t = torch.where(active, t + sdf, t)
        remaining = int(active.sum())
        if remaining < 0.5 * len(active):
            hit[ids], depth[ids] = converged, t
            if remaining == 0:
                return hit, depth
            o, d, t, t_far, ids = o[active], d[active], t[active], t_far[active], ids[active]
            s_shape = s_shape.index(active)
            converged = torch.zeros(remaining, dtype=torch.bool)
            active = torch.ones(remaining, dtype=torch.bool)
    hit[ids], depth[ids] = converged, t
    return hit, depth


def render_shapes(
    specs: Sequence[ShapeSpec],
    labels: Float[Tensor, "batch 25"],
    resolution: int,
    supersample: int = SUPERSAMPLE,
) -> tuple[Float[Tensor, "batch resolution resolution 3"], Float[Tensor, "batch resolution resolution"]]:
    """Render one object per camera: RGB in [0, 1] on black, and the pixel coverage in [0, 1].

    Each pixel averages ``supersample x supersample`` rays through a regular grid in it, so the
    coverage of an edge pixel is the fraction of its rays that hit. Rays look for surfaces between
    ``EG3D_RAY_NEAR`` and ``EG3D_RAY_FAR``; shading is Lambertian under ``LIGHT_DIRECTION`` plus ambient.
    """
    check_positive_int("resolution", resolution)
    check_positive_int("supersample", supersample)
    if labels.dim() != 2 or len(labels) != len(specs):
        raise ValueError(f"need one (25,) label per spec, got {tuple(labels.shape)} for {len(specs)} specs")
    labels = labels.float()
    cam2world, intrinsics = split_camera_labels(labels)
    size = resolution * supersample
    rgb = torch.zeros(len(specs), size * size, 3)
    coverage = torch.zeros(len(specs), size * size)
    light = F.normalize(torch.tensor(LIGHT_DIRECTION), dim=0)
    groups: dict[tuple, list[int]] = {}
    for index, spec in enumerate(specs):
        groups.setdefault(spec.structure(), []).append(index)
    for members in groups.values():
        for start in range(0, len(members), _RENDER_CHUNK):
            chunk = torch.tensor(members[start : start + _RENDER_CHUNK])
            shape = _ShapeTensors.stack([specs[i] for i in chunk.tolist()])
            rays = rays_from_cameras(cam2world[chunk], intrinsics[chunk], size, size, EG3D_RAY_NEAR, EG3D_RAY_FAR)
            # Trace in each object's local frame: rigid, so depths and distances are unchanged.
            origins = (rays.origins.reshape(len(chunk), -1, 3) - shape.translation[:, None]) @ shape.rotation
            directions = rays.directions.reshape(len(chunk), -1, 3) @ shape.rotation
            # Only rays through the object's bounding ball and box can hit it; start where they enter.
            bound = torch.tensor([specs[i].bound() for i in chunk.tolist()])[:, None] + 1e-3
            extent = torch.tensor([specs[i].extent() for i in chunk.tolist()])[:, None] + 1e-3
            along = -(origins * directions).sum(-1)
            root = (along**2 - (origins * origins).sum(-1) + bound**2).clamp_min(0.0).sqrt()
            slab_a, slab_b = (-extent - origins) / directions, (extent - origins) / directions
            near = torch.maximum(along - root, torch.minimum(slab_a, slab_b).amax(-1)).clamp_min(EG3D_RAY_NEAR)
            far = torch.minimum(along + root, torch.maximum(slab_a, slab_b).amin(-1)).clamp_max(EG3D_RAY_FAR)
            candidate = near < far  # a ray that misses the ball gets near = far (root = 0)
            image_of, ray_of = candidate.nonzero(as_tuple=True)
            ray_shape = shape.index(image_of)
            o, d = origins[candidate], directions[candidate]
            hit, depth = _trace(ray_shape, o, d, near[candidate], far[candidate])
            hit_shape = ray_shape.index(hit)
            with torch.enable_grad():
                local = (o[hit] + depth[hit, None] * d[hit]).requires_grad_(True)
                sdf, colour = _evaluate_local(hit_shape, local, with_colour=True)
                (gradient,) = torch.autograd.grad(sdf.sum(), local)
            local_light = light @ hit_shape.rotation  # rotation^T light: the light in each object's frame
            lambert = (F.normalize(gradient, dim=-1) * local_light).sum(-1).clamp_min(0.0)
            shaded = colour.detach() * (AMBIENT + DIFFUSE * lambert)[:, None]
            hit_images, hit_rays = chunk[image_of[hit]], ray_of[hit]
            rgb[hit_images, hit_rays] = shaded
            coverage[hit_images, hit_rays] = 1.0
    rgb = F.avg_pool2d(rgb.reshape(-1, size, size, 3).permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)
    coverage = F.avg_pool2d(coverage.reshape(-1, 1, size, size), supersample)[:, 0]
    return rgb.clamp(0.0, 1.0), coverage


def backdrop_images(
    num_images: int, resolution: int, generator: torch.Generator | None = None
) -> Float[Tensor, "num_images resolution resolution 3"]:
    """Opaque studio backdrops in [0, 1]: per image, a vertical blend between two random muted
    colours. Behind every object of a ``backdrop=True`` dataset, as a portrait's background is
    behind a face: the GAN has to model it, since nothing in the image is empty."""
    check_positive_int("num_images", num_images)
    check_positive_int("resolution", resolution)
    top = 0.15 + 0.7 * torch.rand(num_images, 1, 1, 3, generator=generator)
    bottom = 0.15 + 0.7 * torch.rand(num_images, 1, 1, 3, generator=generator)
    blend = torch.linspace(0.0, 1.0, resolution)[None, :, None, None]
    return (top + (bottom - top) * blend).expand(num_images, resolution, resolution, 3)


def _render_uint8(
    specs: Sequence[ShapeSpec],
    labels: Tensor,
    resolution: int,
    backdrops: Tensor | None = None,
    batch: int = 128,
) -> Iterator[UInt8[np.ndarray, "R R 3"]]:
    """Rendered uint8 images, a batch at a time (so datasets of any size stream to disk), over
    ``backdrops`` (one per image) where given, else over black."""
    for start in range(0, len(specs), batch):
        rgb, coverage = render_shapes(specs[start : start + batch], labels[start : start + batch], resolution)
        if backdrops is not None:
            rgb = rgb + (1.0 - coverage[..., None]) * backdrops[start : start + batch]
        yield from (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()


# ----- datasets -----


def synthesize_dataset(
    out: str | os.PathLike,
    num_images: int = DEFAULT_NUM_IMAGES,
    resolution: int = 64,
    seed: int = 0,
    backdrop: bool = False,
) -> Path:
    """Write a synthetic dataset (PNGs, ``dataset.json``, ``geometry.json``) to the new folder ``out``.

    Deterministic for a seed. ``backdrop`` puts every object in front of an opaque backdrop
    (``backdrop_images``) instead of black, like the background of a face dataset; the objects and
    cameras are the same as without it. Written atomically by ``write_dataset``: ``out`` must not
    exist yet, and ``FileExistsError`` means another process wrote it first.
    """
    check_positive_int("num_images", num_images)
    check_positive_int("resolution", resolution)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists")
    generator = torch.Generator().manual_seed(seed)
    specs = [sample_shape_spec(generator) for _ in range(num_images)]
    labels = sample_camera_labels(num_images, generator)
    names = [f"img{index:08d}.png" for index in range(num_images)]
    geometry = {"version": SYNTHETIC_VERSION, "shapes": {name: spec.to_dict() for name, spec in zip(names, specs)}}
    backdrops = None
    if backdrop:
        geometry["backdrop"] = True
        backdrops = backdrop_images(num_images, resolution, torch.Generator().manual_seed(seed + 1_000_003))
    return write_dataset(
        out,
        _render_uint8(specs, labels, resolution, backdrops),
        labels,
        names,
        extra_files={GEOMETRY_JSON: json.dumps(geometry)},
    )


def load_shape_specs(path: str | os.PathLike) -> dict[str, ShapeSpec]:
    """The ground-truth objects of a synthetic dataset (folder or zip): image name -> ShapeSpec."""
    source = _Source(Path(path))
    where = source.describe(GEOMETRY_JSON)
    if not source.exists(GEOMETRY_JSON):
        raise DatasetError(f"{where}: missing; only synthetic datasets have ground-truth geometry")
    try:
        shapes = json.loads(source.read(GEOMETRY_JSON))["shapes"]
        return {name: ShapeSpec.from_dict(data) for name, data in shapes.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DatasetError(f"{where}: malformed ground truth ({error!r})") from error


def cache_folder() -> Path:
    """Where ``wysiwyg_gan`` keeps what it generates once and reuses (datasets, feature encoders):
    ``$WYSIWYG_GAN_CACHE``, else ``$XDG_CACHE_HOME/wysiwyg_gan``, else ``~/.cache/wysiwyg_gan``."""
    if os.environ.get("WYSIWYG_GAN_CACHE"):
        return Path(os.environ["WYSIWYG_GAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wysiwyg_gan"


def default_dataset(resolution: int = 64, num_images: int = DEFAULT_NUM_IMAGES, seed: int = 0) -> Path:
    """The embedded synthetic dataset, generated on first use and reused afterwards.

    It lives in ``cache_folder()`` under ``synthetic-v<version>-<resolution>-<num_images>-<seed>``.
    Generation is deterministic and atomic, so concurrent processes may race to create it: one
    wins, the others reuse its result.
    """
    path = cache_folder() / f"synthetic-v{SYNTHETIC_VERSION}-{resolution}-{num_images}-{seed}"
    if not (path / DATASET_JSON).is_file():
        try:
            synthesize_dataset(path, num_images=num_images, resolution=resolution, seed=seed)
        except FileExistsError:
            if not (path / DATASET_JSON).is_file():
                raise DatasetError(f"{path}: exists but holds no {DATASET_JSON}; delete it to regenerate") from None
    return path
