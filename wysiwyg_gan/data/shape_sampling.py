"""Random objects for the synthetic dataset: a family, size, orientation, position and colour.

Every object lies in the ball of radius ``OBJECT_RADIUS`` around the origin, so it is whole in the
frame of every orbit camera and well inside the GAN's ``[-0.5, 0.5]^3`` triplane box and EG3D's ray
bounds.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from wysiwyg_gan.data.shapes import COMPOUND, FAMILIES, PRIMITIVES, ShapeSpec

OBJECT_RADIUS = 0.3
"""Every sampled object lies in the ball of this radius around the origin.

An orbit camera at radius 2.7 with EG3D's field of view sees a ball of radius ~0.31 around the
pivot whole, so objects are never cropped.
"""
_PROPORTIONS: dict[str, dict[str, tuple[float, float]]] = {
    "sphere": {"radius": (1.0, 1.0)},
    "ellipsoid": {"radius_x": (0.4, 1.0), "radius_y": (0.4, 1.0), "radius_z": (0.4, 1.0)},
    "rounded_box": {"half_x": (0.35, 1.0), "half_y": (0.35, 1.0), "half_z": (0.35, 1.0), "rounding": (0.05, 0.25)},
    "torus": {"major_radius": (1.0, 1.0), "minor_radius": (0.25, 0.5)},
    "capsule": {"half_length": (0.3, 1.0), "radius": (0.3, 0.6)},
    "cylinder": {"radius": (0.4, 1.0), "half_height": (0.4, 1.0)},
}
"""Per primitive family, uniform ranges of its parameters before the shape is scaled to its size."""


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
    proportions = {key: _uniform(generator, *limits) for key, limits in _PROPORTIONS[family].items()}
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
        axis = _random_offset(generator, 1.0)
        axis_length = math.hypot(*axis)
        parts = []
        for sign in (1.0, -1.0):
            part_family = PRIMITIVES[int(torch.randint(len(PRIMITIVES), (), generator=generator))]
            part = _random_primitive(generator, part_family, _uniform(generator, 0.5, 0.7))
            distance = _uniform(generator, 0.2, 0.45)
            parts.append(replace(part, translation=tuple(sign * distance * value / axis_length for value in axis)))
        blend = {"blend": _uniform(generator, 0.1, 0.3)}
        spec = ShapeSpec(COMPOUND, blend, rotation=_random_rotation(generator), parts=tuple(parts))
        spec = _scaled(spec, size / spec.bound())
    else:
        spec = _random_primitive(generator, family, size)
    return replace(spec, translation=_random_offset(generator, OBJECT_RADIUS - size))
