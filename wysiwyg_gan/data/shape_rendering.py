"""Images of procedural objects: sphere traced in pure torch, one object per camera.

Surfaces are shaded Lambertian under a fixed world-space light plus ambient (so shading is
consistent across views), on a black background, and antialiased by supersampling; the pixel
coverage comes with the colours, for compositing over a backdrop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from learned_sampler import EG3D_RAY_FAR, EG3D_RAY_NEAR, rays_from_cameras
from learned_sampler.validation import check_positive_int
from wysiwyg_gan.data.dataset import split_camera_labels
from wysiwyg_gan.data.shapes import ShapeBatch, ShapeSpec, evaluate_shapes

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


def _trace(
    shape: ShapeBatch, origins: Tensor, directions: Tensor, near: Tensor, far: Tensor
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
        sdf, _ = evaluate_shapes(s_shape, o + t[:, None] * d, with_colour=False)
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
    rgb, coverage, _ = _render(specs, labels, resolution, supersample)
    return rgb, coverage


def render_shape_normals(
    specs: Sequence[ShapeSpec],
    labels: Float[Tensor, "batch 25"],
    resolution: int,
    supersample: int = SUPERSAMPLE,
) -> tuple[Float[Tensor, "batch resolution resolution 3"], Float[Tensor, "batch resolution resolution"]]:
    """The true world-space unit normals of ``render_shapes``' objects (zero where no ray hits; at
    an edge pixel the normalised mean over the rays that hit), and the pixel coverage."""
    _, coverage, normals = _render(specs, labels, resolution, supersample)
    return F.normalize(normals, dim=-1), coverage


def _render(
    specs: Sequence[ShapeSpec], labels: Tensor, resolution: int, supersample: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Colour, coverage and the coverage-weighted mean world normal of every pixel."""
    check_positive_int("resolution", resolution)
    check_positive_int("supersample", supersample)
    if labels.dim() != 2 or len(labels) != len(specs):
        raise ValueError(f"need one (25,) label per spec, got {tuple(labels.shape)} for {len(specs)} specs")
    labels = labels.float()
    cam2world, intrinsics = split_camera_labels(labels)
    size = resolution * supersample
    rgb = torch.zeros(len(specs), size * size, 3)
    normals = torch.zeros(len(specs), size * size, 3)
    coverage = torch.zeros(len(specs), size * size)
    light = F.normalize(torch.tensor(LIGHT_DIRECTION), dim=0)
    groups: dict[tuple, list[int]] = {}
    for index, spec in enumerate(specs):
        groups.setdefault(spec.structure(), []).append(index)
    for members in groups.values():
        for start in range(0, len(members), _RENDER_CHUNK):
            chunk = torch.tensor(members[start : start + _RENDER_CHUNK])
            shape = ShapeBatch.stack([specs[i] for i in chunk.tolist()])
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
                sdf, colour = evaluate_shapes(hit_shape, local, with_colour=True)
                (gradient,) = torch.autograd.grad(sdf.sum(), local)
            local_light = light @ hit_shape.rotation  # rotation^T light: the light in each object's frame
            lambert = (F.normalize(gradient, dim=-1) * local_light).sum(-1).clamp_min(0.0)
            shaded = colour.detach() * (AMBIENT + DIFFUSE * lambert)[:, None]
            hit_images, hit_rays = chunk[image_of[hit]], ray_of[hit]
            rgb[hit_images, hit_rays] = shaded
            # Local frame to world: the rows rotate back by rotation^T.
            normals[hit_images, hit_rays] = (F.normalize(gradient, dim=-1)[:, None] @ hit_shape.rotation.transpose(1, 2))[:, 0]
            coverage[hit_images, hit_rays] = 1.0

    def pool(values: Tensor) -> Tensor:
        return F.avg_pool2d(values.reshape(-1, size, size, 3).permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)

    coverage = F.avg_pool2d(coverage.reshape(-1, 1, size, size), supersample)[:, 0]
    return pool(rgb).clamp(0.0, 1.0), coverage, pool(normals)
