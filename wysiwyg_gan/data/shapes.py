"""Procedural objects with known geometry: analytic signed distance functions (positive outside).

Every object is one of a few families (sphere, ellipsoid, rounded box, torus, capsule, cylinder,
and compounds of two or more primitives blended by a smooth union), placed by a rotation and a
translation and coloured. ``ShapeSpec`` describes one object and serialises to JSON (the ground
truth of a synthetic dataset); ``ShapeBatch`` stacks specs of one structure so that the points or
rays of many objects are evaluated together (``evaluate_shapes``). ``shape_sdf`` and
``sample_surface_points`` give the ground truth for geometry metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from learned_sampler.validation import check_positive_int


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
    parameters: tuple[str, ...]
    """Names of the parameters, every one a length."""


def _box_half(q: dict[str, float]) -> tuple[float, float, float]:
    return (q["half_x"] + q["rounding"], q["half_y"] + q["rounding"], q["half_z"] + q["rounding"])


_FAMILIES: dict[str, _Family] = {
    "sphere": _Family(_sphere, lambda q: (q["radius"],) * 3, lambda q: q["radius"], ("radius",)),
    "ellipsoid": _Family(
        _ellipsoid,
        lambda q: (q["radius_x"], q["radius_y"], q["radius_z"]),
        lambda q: max(q["radius_x"], q["radius_y"], q["radius_z"]),
        ("radius_x", "radius_y", "radius_z"),
    ),
    "rounded_box": _Family(
        _rounded_box,
        _box_half,
        lambda q: math.hypot(q["half_x"], q["half_y"], q["half_z"]) + q["rounding"],
        ("half_x", "half_y", "half_z", "rounding"),
    ),
    "torus": _Family(
        _torus,
        lambda q: (q["major_radius"] + q["minor_radius"], q["minor_radius"], q["major_radius"] + q["minor_radius"]),
        lambda q: q["major_radius"] + q["minor_radius"],
        ("major_radius", "minor_radius"),
    ),
    "capsule": _Family(
        _capsule,
        lambda q: (q["radius"], q["half_length"] + q["radius"], q["radius"]),
        lambda q: q["half_length"] + q["radius"],
        ("half_length", "radius"),
    ),
    "cylinder": _Family(
        _cylinder,
        lambda q: (q["radius"], q["half_height"], q["radius"]),
        lambda q: math.hypot(q["radius"], q["half_height"]),
        ("radius", "half_height"),
    ),
}
PRIMITIVES = tuple(_FAMILIES)
"""The families with an SDF of their own, the parts of compounds."""
COMPOUND = "compound"
"""Family of a smooth union of parts; its one parameter ``blend`` is the union's smoothing length."""
FAMILIES = (*PRIMITIVES, COMPOUND)
"""Every shape family."""


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
        expected = ("blend",) if self.family == COMPOUND else _FAMILIES[self.family].parameters
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
class ShapeBatch:
    """ShapeSpecs of one structure stacked along a leading batch dimension (or one per ray).

    Specs of one structure (``ShapeSpec.structure``) share their families at every level of the
    shape tree, so one SDF evaluation serves them all.
    """

    family: str
    parameters: dict[str, Float[Tensor, "batch"]]
    rotation: Float[Tensor, "batch 3 3"]
    translation: Float[Tensor, "batch 3"]
    colour: Float[Tensor, "batch 3"]
    parts: tuple[ShapeBatch, ...]

    @classmethod
    def stack(cls, specs: Sequence[ShapeSpec], dtype: torch.dtype = torch.float32) -> ShapeBatch:
        """The specs, which must share one structure, as tensors of ``dtype``."""
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

    def index(self, index: Tensor) -> ShapeBatch:
        """Select batch entries, e.g. each ray's object."""
        return ShapeBatch(
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


def evaluate_shapes(
    shape: ShapeBatch, local: Float[Tensor, "*batch 3"], with_colour: bool
) -> tuple[Float[Tensor, "*batch"], Float[Tensor, "*batch 3"] | None]:
    """SDF (and surface colour, else ``None``) of shapes at points in their local frames.

    The shapes' batch dimension broadcasts against the points', e.g. one shape per ray.
    """
    if shape.family != COMPOUND:
        colour = shape.colour.expand(local.shape) if with_colour else None
        return _FAMILIES[shape.family].sdf(local, shape.parameters), colour
    blend = shape.parameters["blend"]
    sdf, colour = None, None
    for part in shape.parts:
        part_sdf, part_colour = evaluate_shapes(part, _to_local(local, part.rotation, part.translation), with_colour)
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
    shape = ShapeBatch.stack([spec], points.dtype)
    flat = points.reshape(-1, 3)
    sdf, _ = evaluate_shapes(shape, _to_local(flat, shape.rotation, shape.translation), with_colour=False)
    return sdf.reshape(points.shape[:-1])


def _sdf_and_gradient(spec_tensors: ShapeBatch, local: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        local = local.detach().requires_grad_(True)
        sdf, _ = evaluate_shapes(spec_tensors, local, with_colour=False)
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
    shape = ShapeBatch.stack([spec], torch.float64)  # float64 so the projection converges tightly
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
