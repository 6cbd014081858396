"""Shared fixtures: a tiny analytic SDF sphere field and small EG3D-style cameras.

Everything here is CPU-only and seeded, so every test is deterministic.
"""

from __future__ import annotations

import math

import os

import pytest
import torch
from hypothesis import settings
from torch import nn

from learned_sampler import intrinsics_from_fov, rays_from_cameras, sample_orbit_cameras, volsdf_density
from learned_sampler.cameras import EG3D_FOV_DEGREES

# The test tensors are tiny: one intra-op thread avoids thread start-up and contention overhead
# (tens of ms per convolution on a busy 2-core machine) and keeps reductions in a fixed order.
torch.set_num_threads(1)

# Property tests draw the same examples on every run (a fixed seed per test, no example database),
# so the suite is deterministic. HYPOTHESIS_PROFILE=explore draws fresh random examples instead.
settings.register_profile("deterministic", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", derandomize=False, database=None, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

NEAR, FAR = 2.25, 3.3
"""EG3D's FFHQ depth range; the cameras sit 2.7 from the origin."""


class SphereField(nn.Module):
    """A VolSDF sphere: ``sdf = |x - centre| - radius``, density from ``volsdf_density``.

    ``beta`` varies in space (larger towards +x) so that compositing it is not trivial; the colour
    depends on the position so that images are not constant. All three quantities are learnable,
    so gradients can be checked.
    """

    def __init__(self, radius: float = 0.2, beta: float = 0.02, centre=(0.0, 0.0, 0.0)):
        super().__init__()
        self.radius = nn.Parameter(torch.tensor(float(radius)))
        self.log_beta = nn.Parameter(torch.tensor(math.log(beta)))
        self.colour = nn.Parameter(torch.tensor([0.5, -0.2, 0.1]))
        self.register_buffer("centre", torch.tensor(centre, dtype=torch.float32))

    def forward(self, positions: torch.Tensor, directions: torch.Tensor) -> dict[str, torch.Tensor]:
        sdf = (positions - self.centre).norm(dim=-1) - self.radius
        beta = self.log_beta.exp() * (1.0 + 0.5 * torch.sigmoid(4.0 * positions[..., 0]))
        density = volsdf_density(sdf, beta)
        rgb = torch.sigmoid(self.colour + 3.0 * positions)
        return {"density": density, "rgb": rgb, "beta": beta, "sdf": sdf}


class CountingField:
    """Wraps a field and records the shape of every positions tensor it receives."""

    def __init__(self, field):
        self.field = field
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, positions: torch.Tensor, directions: torch.Tensor) -> dict[str, torch.Tensor]:
        assert positions.shape == directions.shape
        self.shapes.append(tuple(positions.shape))
        return self.field(positions, directions)

    @property
    def calls(self) -> int:
        return len(self.shapes)

    @property
    def points(self) -> int:
        return sum(math.prod(shape[:-1]) for shape in self.shapes)

    def reset(self) -> None:
        self.shapes.clear()


def make_rays(batch_size: int = 2, height: int = 16, width: int = 16, seed: int = 0, near=NEAR, far=FAR):
    """Image rays ``(B, H, W)`` of seeded random orbit cameras around the frontal view."""
    generator = torch.Generator().manual_seed(seed)
    cam2world = sample_orbit_cameras(batch_size, generator=generator)
    intrinsics = intrinsics_from_fov(EG3D_FOV_DEGREES, batch_size)
    return rays_from_cameras(cam2world, intrinsics, height, width, near, far)


@pytest.fixture
def sphere_field() -> SphereField:
    torch.manual_seed(0)
    return SphereField()


@pytest.fixture
def counting_field(sphere_field) -> CountingField:
    return CountingField(sphere_field)


@pytest.fixture
def small_rays():
    """2 images of 16 x 16 rays over [2.25, 3.3]."""
    return make_rays(2, 16, 16)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint of the tiny GAN of ``gan_helpers`` (one per test module)."""
    from gan_helpers import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))
