"""Datasets of analytic scenes with exact ground truth: Blender-format object scenes, and an
unbounded capture in nerfstudio's own format.

``write_blender_scene(directory, "thin_structures", ...)`` renders an analytic field from cameras on
a sphere and writes what nerfstudio's ``blender-data`` parser reads: ``transforms_{train,val,test}.json``
(``camera_angle_x`` and OpenGL camera-to-world ``transform_matrix`` per frame) and RGBA PNGs with
straight (unpremultiplied) alpha, as the Blender synthetic scenes: the parser composites them over
white by default, and with ``alpha_color=None`` a model can train on a random background. The
tests and ``benchmarks/nerfstudio_vs_nerfacto.py`` use it, so their
scenes have thin structures and occlusions whose images are known exactly (a dense quadrature of
the analytic field, ``reference_samples`` uniform samples per ray).

World units: the scene (radius <= 0.7 in ``learned_sampler.scenes``) is scaled by ``SCENE_SCALE``
so that it fills nerfstudio's Blender scene box ``[-1.5, 1.5]^3`` (and stays inside the identity
region ``|x|_inf <= 1`` of nerfacto's scene contraction); cameras sit at ``CAMERA_RADIUS`` like the
Blender synthetic scenes.

``write_unbounded_scene(directory, ...)`` renders what a phone capture of an object would hold:
the occluder scene standing above a textured ground plane that runs to the horizon, inside a
textured environment sphere far away (``unbounded_field``), seen by inward-facing cameras on a ring
around the object. It writes nerfstudio's own format (``transforms.json`` with pinhole intrinsics
and OpenGL camera-to-world matrices, opaque PNGs), which ``nerfstudio-data`` reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import learned_sampler as ls
from learned_sampler.scenes import SCENES, make_scene

SCENE_SCALE = 1.4
"""World units per unit of ``learned_sampler.scenes`` (scene radius 0.7 -> 0.98)."""
CAMERA_RADIUS = 4.0
"""Distance of the cameras from the origin (as the Blender synthetic scenes)."""
CAMERA_ANGLE_X = math.radians(36.0)
"""Horizontal field of view; frames a radius of ~1.3 at ``CAMERA_RADIUS``."""
_OPENCV_TO_OPENGL = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def scaled_scene_field(name: str) -> ls.Field:
    """The analytic field ``name`` in world units (positions scaled by ``SCENE_SCALE``, density / scale)."""
    field = make_scene(name)

    def world_field(positions: torch.Tensor, directions: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = field(positions / SCENE_SCALE, directions)
        return {"density": outputs["density"] / SCENE_SCALE, "rgb": outputs["rgb"]}

    return world_field


def orbit_poses(count: int, seed: int, min_elevation: float = -20.0, max_elevation: float = 60.0) -> torch.Tensor:
    """OpenCV cam2world matrices ``(count, 4, 4)`` on the ``CAMERA_RADIUS`` sphere looking at the origin.

    Azimuths are evenly spread with a seeded jitter (every side of the scene is seen); elevations
    are uniform in ``[min_elevation, max_elevation]`` degrees.
    """
    generator = torch.Generator().manual_seed(seed)
    azimuth = (torch.arange(count) + torch.rand(count, generator=generator)) * (2 * math.pi / count)
    elevation = torch.deg2rad(min_elevation + (max_elevation - min_elevation) * torch.rand(count, generator=generator))
    eyes = CAMERA_RADIUS * torch.stack(
        [torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation), torch.cos(elevation) * torch.cos(azimuth)], -1
    )
    return ls.look_at(eyes, torch.zeros_like(eyes))


def reference_rays(cam2world_opencv: torch.Tensor, resolution: int) -> ls.Rays:
    """Rays ``(B, H, W)`` of the dataset's cameras, spanning the depths where the scene can be."""
    focal = 0.5 / math.tan(0.5 * CAMERA_ANGLE_X)  # normalised by the image width (= height)
    intrinsics = torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]]).expand(len(cam2world_opencv), 3, 3)
    near, far = CAMERA_RADIUS - 0.75 * 1.5, CAMERA_RADIUS + 0.75 * 1.5  # the scene lies within radius 0.98
    return ls.rays_from_cameras(cam2world_opencv, intrinsics.clone(), resolution, resolution, near, far)


def render_image_chunks(rays: ls.Rays, render_chunk: Callable[[ls.Rays], torch.Tensor], rays_per_chunk: int = 2048) -> torch.Tensor:
    """``render_chunk`` over a ``(B, H, W)`` ray grid a few rows of one image at a time, the
    results joined into ``(B, H, W, C)``: dense reference renders then need memory for about
    ``rays_per_chunk`` rays' samples whatever the image size and count."""
    views, height, width = rays.batch_shape
    rows_per_chunk = max(1, rays_per_chunk // width)
    images = []
    for view in range(views):
        rows = [render_chunk(rays[view : view + 1, top : top + rows_per_chunk]) for top in range(0, height, rows_per_chunk)]
        images.append(torch.cat(rows, dim=1))
    return torch.cat(images)


@torch.no_grad()
def render_reference(field: ls.Field, cam2world_opencv: torch.Tensor, resolution: int, reference_samples: int = 2048) -> torch.Tensor:
    """Exact-quadrature RGBA images ``(B, H, W, 4)`` (dense uniform samples).

    The colour channels are straight, not premultiplied: ``rgb * alpha + white * (1 - alpha)`` is
    the image over white. Where nothing is hit (alpha 0) the colour is white.
    """

    def render_chunk(chunk: ls.Rays) -> torch.Tensor:
        intervals = ls.uniform_intervals(chunk.nears, chunk.fars, reference_samples, stratified=False)
        result = ls.render(chunk, intervals, field, composite=())
        alpha = result.opacity[..., None]
        # Unpremultiply (sum w c <= sum w, so this stays in [0, 1]); rays that hit nothing get white.
        straight = torch.where(alpha > 0, result.rgb / alpha.clamp_min(1e-12), torch.ones_like(result.rgb))
        return torch.cat([straight, alpha], dim=-1)

    return render_image_chunks(reference_rays(cam2world_opencv, resolution), render_chunk).clamp(0.0, 1.0)


def write_blender_scene(
    directory: str | Path,
    scene: str,
    resolution: int = 64,
    num_train: int = 24,
    num_val: int = 2,
    num_test: int = 4,
    reference_samples: int = 2048,
    seed: int = 0,
) -> Path:
    """Render analytic scene ``scene`` into a Blender-format dataset at ``directory``; returns it.

    The train, val and test cameras are disjoint (different seeds), so val/test views are held out.
    """
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; choose from {sorted(SCENES)}")
    if resolution < 4 or num_train < 1 or num_val < 1 or num_test < 1:
        raise ValueError("resolution must be >= 4 and every split needs at least one view")
    directory = Path(directory)
    field = scaled_scene_field(scene)
    for offset, (split, count) in enumerate((("train", num_train), ("val", num_val), ("test", num_test))):
        (directory / split).mkdir(parents=True, exist_ok=True)
        poses = orbit_poses(count, seed=seed * 1000 + offset)
        images = render_reference(field, poses, resolution, reference_samples)
        frames = []
        for index, (pose, image) in enumerate(zip(poses, images)):
            stem = f"{split}/r_{index}"
            Image.fromarray((image.numpy() * 255.0 + 0.5).astype(np.uint8)).save(directory / f"{stem}.png")
            opengl_pose = pose @ _OPENCV_TO_OPENGL  # Blender / nerfstudio: camera y up, z backwards
            frames.append({"file_path": f"./{stem}", "transform_matrix": opengl_pose.tolist()})
        transforms = {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}
        (directory / f"transforms_{split}.json").write_text(json.dumps(transforms, indent=2))
    return directory


GROUND_HEIGHT = -1.0
"""Height (world y, up) of the unbounded scene's ground plane, under the object (radius 0.98)."""
ENVIRONMENT_RADIUS = 40.0
"""Radius of the unbounded scene's environment sphere, around the origin."""
RING_RADIUS = 3.0
"""Distance of the unbounded scene's cameras from the vertical axis through the object."""
UNBOUNDED_FOV_X = math.radians(60.0)
"""Horizontal field of view of the unbounded scene's cameras (a phone's)."""


def unbounded_field(beta: float = 0.002) -> ls.Field:
    """The occluder scene (world units) above a textured ground plane inside a textured environment
    sphere: ground and environment reach far beyond any scene box."""
    scene = scaled_scene_field("occluder")

    def field(positions: torch.Tensor, directions: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = scene(positions, directions)
        x, y, z = positions.unbind(-1)
        ground_sdf = y - GROUND_HEIGHT
        radius = positions.norm(dim=-1)
        environment_sdf = ENVIRONMENT_RADIUS - radius
        check = torch.sin(2.0 * x) * torch.sin(2.0 * z)
        ground_rgb = torch.stack([0.55 + 0.3 * check, 0.45 + 0.25 * check, 0.3 + 0.1 * torch.sin(0.3 * x)], -1)
        unit = positions / radius.clamp_min(1e-6)[..., None]
        elevation = unit[..., 1]
        stripes = torch.sin(12.0 * torch.atan2(unit[..., 0], unit[..., 2])) * torch.cos(6.0 * elevation)
        sky_rgb = torch.stack([0.35 + 0.2 * stripes, 0.55 + 0.3 * elevation, 0.85 - 0.1 * stripes], -1).clamp(0.0, 1.0)
        world_sdf = torch.minimum(ground_sdf, environment_sdf)
        world_rgb = torch.where((ground_sdf < environment_sdf)[..., None], ground_rgb, sky_rgb)
        world_density = ls.volsdf_density(world_sdf, torch.full_like(world_sdf, beta))
        # The object and the world never touch (it stands above the ground), so the colour is the
        # densest one's and the densities add.
        object_densest = (outputs["density"] >= world_density)[..., None]
        return {
            "density": outputs["density"] + world_density,
            "rgb": torch.where(object_densest, outputs["rgb"], world_rgb),
        }

    return field


def ring_poses(count: int, seed: int) -> torch.Tensor:
    """OpenCV cam2world matrices ``(count, 4, 4)`` on a ring around the object, looking at it from
    slightly above, with seeded jitter in azimuth, height and distance (a walk around the object)."""
    generator = torch.Generator().manual_seed(seed)
    azimuth = (torch.arange(count) + torch.rand(count, generator=generator)) * (2 * math.pi / count)
    height = 0.2 + 0.6 * torch.rand(count, generator=generator)
    distance = RING_RADIUS * (0.9 + 0.2 * torch.rand(count, generator=generator))
    eyes = torch.stack([distance * torch.sin(azimuth), height, distance * torch.cos(azimuth)], -1)
    return ls.look_at(eyes, torch.tensor([[0.0, -0.3, 0.0]]).expand(count, 3))


@torch.no_grad()
def render_unbounded_reference(cam2world_opencv: torch.Tensor, resolution: int, reference_samples: int = 4096) -> torch.Tensor:
    """Exact-quadrature RGB images ``(B, H, W, 3)`` of ``unbounded_field``: dense samples equal in
    disparity from 0.5 to beyond the environment sphere (every ray ends on it)."""
    focal = 0.5 / math.tan(0.5 * UNBOUNDED_FOV_X)
    intrinsics = torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]]).expand(len(cam2world_opencv), 3, 3)
    rays = ls.rays_from_cameras(cam2world_opencv, intrinsics.clone(), resolution, resolution, 0.5, 1.5 * ENVIRONMENT_RADIUS)
    field = unbounded_field()

    def render_chunk(chunk: ls.Rays) -> torch.Tensor:
        intervals = ls.uniform_intervals(chunk.nears, chunk.fars, reference_samples, stratified=False, spacing="disparity")
        return ls.render(chunk, intervals, field, composite=()).rgb

    return render_image_chunks(rays, render_chunk).clamp(0.0, 1.0)


def write_unbounded_scene(
    directory: str | Path, resolution: int = 64, num_images: int = 40, reference_samples: int = 4096, seed: int = 0
) -> Path:
    """Render the unbounded scene from ``num_images`` ring cameras into nerfstudio's format at
    ``directory``; returns it. ``nerfstudio-data`` holds out every tenth image for evaluation (its
    default ``train_split_fraction`` of 0.9)."""
    if resolution < 4 or num_images < 2:
        raise ValueError("resolution must be >= 4 and the scene needs at least two images")
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    poses = ring_poses(num_images, seed)
    images = render_unbounded_reference(poses, resolution, reference_samples)
    frames = []
    for index, (pose, image) in enumerate(zip(poses, images)):
        name = f"images/frame_{index:05d}.png"
        Image.fromarray((image.numpy() * 255.0 + 0.5).astype(np.uint8)).save(directory / name)
        frames.append({"file_path": name, "transform_matrix": (pose @ _OPENCV_TO_OPENGL).tolist()})
    focal = 0.5 * resolution / math.tan(0.5 * UNBOUNDED_FOV_X)
    transforms = {
        "camera_model": "OPENCV",
        "fl_x": focal,
        "fl_y": focal,
        "cx": resolution / 2,
        "cy": resolution / 2,
        "w": resolution,
        "h": resolution,
        "frames": frames,
    }
    (directory / "transforms.json").write_text(json.dumps(transforms, indent=2))
    return directory
