"""True normal maps of a dataset's images, for the normal-map distribution metric (FID-N's idea).

A normal map is an image: each pixel's unit surface normal ``n`` in the axes of its camera (the
EG3D label's cam2world rotation, OpenCV convention: x right, y down, z forward) stored as
``(n + 1) / 2`` times the pixel's coverage, black where there is no object. Two sources:

* a ``normals/`` folder in the dataset (folder or zip) with one PNG per image under the image's
  own name (``normals/img00000000.png`` for ``img00000000.png``), in this encoding: any
  ``--data`` can carry its normal maps this way (e.g. rendered from scans, as the paper's FID-N
  uses for FFHQ);
* the synthetic dataset's ``geometry.json``: its objects are rendered again with their true
  normals (``render_shape_normals``) from the dataset's cameras.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from PIL import Image
from torch import Tensor

from wysiwyg_gan.data.dataset import DatasetError, _Source, split_camera_labels, validate_dataset
from wysiwyg_gan.data.shape_rendering import render_shape_normals
from wysiwyg_gan.data.synthetic import GEOMETRY_JSON, load_shape_specs

NORMALS_FOLDER = "normals"
"""The dataset folder that holds the true normal maps (one PNG per image, same file name)."""


def camera_space_normals(
    world_normals: Float[Tensor, "batch 3 height width"], labels: Float[Tensor, "batch 25"]
) -> Float[Tensor, "batch 3 height width"]:
    """World-space normals in the axes of each image's camera (``R^T n`` with ``R`` the label's
    cam2world rotation)."""
    if world_normals.dim() != 4 or world_normals.shape[1] != 3 or labels.shape != (world_normals.shape[0], 25):
        raise ValueError(
            f"need normals (B, 3, H, W) and labels (B, 25), got {tuple(world_normals.shape)} and {tuple(labels.shape)}"
        )
    rotation = split_camera_labels(labels.to(world_normals.dtype))[0][:, :3, :3]
    return torch.einsum("bji,bjhw->bihw", rotation, world_normals)


def normal_map_images(
    camera_normals: Float[Tensor, "batch 3 height width"], coverage: Float[Tensor, "batch 1 height width"]
) -> Float[Tensor, "batch 3 height width"]:
    """Normal maps as images in [-1, 1] (the feature encoder's input): ``(n + 1) / 2`` times the
    coverage (or opacity) in [0, 1], black where nothing is."""
    if camera_normals.dim() != 4 or camera_normals.shape[1] != 3 or coverage.shape != (
        camera_normals.shape[0], 1, *camera_normals.shape[2:]
    ):
        raise ValueError(
            f"need normals (B, 3, H, W) and coverage (B, 1, H, W), got {tuple(camera_normals.shape)} and {tuple(coverage.shape)}"
        )
    return ((camera_normals + 1.0) / 2.0 * coverage.clamp(0.0, 1.0)).clamp(0.0, 1.0) * 2.0 - 1.0


def has_true_normals(path: str | os.PathLike) -> bool:
    """Whether the dataset carries true normal maps (a ``normals/`` folder or synthetic geometry)."""
    info = validate_dataset(path)
    source = _Source(info.path)
    return source.exists(f"{NORMALS_FOLDER}/{info.names[0]}") or source.exists(GEOMETRY_JSON)


def true_normal_maps(
    path: str | os.PathLike, indices: Sequence[int], resolution: int, batch: int = 64
) -> Float[Tensor, "num 3 resolution resolution"]:
    """The true normal maps of images ``indices`` of the dataset at ``path``, as images in [-1, 1]
    at ``resolution``: from its ``normals/`` folder when it has one, else rendered from its
    synthetic ``geometry.json``; ``DatasetError`` saying what is needed when it has neither."""
    info = validate_dataset(path)
    source = _Source(info.path)
    names = [info.names[index] for index in indices]
    if source.exists(f"{NORMALS_FOLDER}/{info.names[0]}"):
        return torch.stack([_read_normal_map(source, name, resolution) for name in names])
    if not source.exists(GEOMETRY_JSON):
        raise DatasetError(
            f"{Path(info.path)}: no true normal maps; add a {NORMALS_FOLDER}/ folder with one PNG per image under its "
            "own name (camera-space normals n stored as (n + 1) / 2, black background), or use a synthetic dataset"
        )
    specs = load_shape_specs(info.path)
    labels = torch.from_numpy(info.labels[list(indices)])
    maps = []
    for start in range(0, len(names), batch):
        chunk = slice(start, start + batch)
        normals, coverage = render_shape_normals([specs[name] for name in names[chunk]], labels[chunk], resolution)
        camera = camera_space_normals(normals.permute(0, 3, 1, 2), labels[chunk])
        maps.append(normal_map_images(camera, coverage[:, None]))
    return torch.cat(maps)


def _read_normal_map(source: _Source, name: str, resolution: int) -> Tensor:
    member = f"{NORMALS_FOLDER}/{name}"
    if not source.exists(member):
        raise DatasetError(f"{source.describe(member)}: missing (every image needs its normal map)")
    try:
        pixels = np.array(Image.open(io.BytesIO(source.read(member))).convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{source.describe(member)}: not a readable image ({error})") from error
    image = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 127.5 - 1.0
    if image.shape[-1] != resolution or image.shape[-2] != resolution:
        image = F.interpolate(image, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return image[0]
