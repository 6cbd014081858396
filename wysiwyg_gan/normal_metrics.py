"""FID-N's idea, offline: the distribution of generated normal maps against the real set's true ones.

The paper's FID-N compares Inception features of rendered normal maps with those of normal maps
rendered from 3D scans. Here both sides go through the dataset's feature encoder
(``wysiwyg_gan.feature_encoder``, trained on the RGB images, as Inception was trained on photos):
the generated maps are the SDF normals at each pixel's expected surface point, in camera axes,
times the pixel's opacity (``wysiwyg_gan.data.normal_maps`` encodes both sides alike), and the true
maps come from the dataset (``true_normal_maps``: a ``normals/`` folder, or the synthetic data's
geometry). Bumpy surfaces, flat cards and objects painted on walls all move the normal maps away
from the true ones even where the colour images match.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from wysiwyg_gan.data.normal_maps import camera_space_normals, normal_map_images, true_normal_maps
from wysiwyg_gan.distribution_metrics import feature_report
from wysiwyg_gan.images import images_to_uint8

if TYPE_CHECKING:
    from wysiwyg_gan.feature_encoder import FeatureEncoder
    from wysiwyg_gan.inference import TrainedGAN


@torch.no_grad()
def generated_normal_maps(
    gan: TrainedGAN,
    seeds: Sequence[int],
    render_labels: Float[Tensor, "num_seeds 25"],
    condition_labels: Float[Tensor, "num_seeds 25"],
    truncation_psi: float = 1.0,
    resolution: int | None = None,
    batch_size: int = 8,
) -> Float[Tensor, "num_seeds 3 res res"]:
    """Normal maps (images in [-1, 1], on the CPU) of the seeds rendered from ``render_labels``;
    renders below the run's resolution are upsampled to it, as for the colour images."""
    maps = []
    seeds = list(seeds)
    for start in range(0, len(seeds), batch_size):
        batch = seeds[start : start + batch_size]
        labels = render_labels[start : start + len(batch)].to(gan.device)
        condition = condition_labels[start : start + len(batch)].to(gan.device)
        field = gan.field(gan.mapping(gan.latents(batch), condition, truncation_psi))
        images = gan.render(field, labels, resolution)
        camera = camera_space_normals(gan.normals(field, images, labels), labels)
        image = normal_map_images(camera, images.opacity)
        if image.shape[-1] != gan.resolution:
            image = F.interpolate(image, size=(gan.resolution,) * 2, mode="bilinear", align_corners=False)
        maps.append(image.cpu())
    return torch.cat(maps)


def real_normal_features(
    encoder: FeatureEncoder, data: str | Path, num_images: int, count: int, seed: int, resolution: int, batch_size: int = 64
) -> Float[Tensor, "num_reals feature_dim"]:
    """Encoder features of the true normal maps of ``count`` real images at most (all of them, or
    the seeded random subset ``distribution_metrics.real_features`` takes of the colour images)."""
    indices = torch.arange(num_images)
    if num_images > count:
        indices = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed))[:count].sort().values
    maps = true_normal_maps(data, indices.tolist(), resolution)
    return encoder.features(images_to_uint8(maps), batch_size=batch_size)


def normal_distribution(
    gan: TrainedGAN,
    encoder: FeatureEncoder,
    reals: Float[Tensor, "num_reals feature_dim"],
    seeds: Sequence[int],
    render_labels: Float[Tensor, "num_seeds 25"],
    condition_labels: Float[Tensor, "num_seeds 25"],
    truncation_psi: float = 1.0,
    k: int = 3,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
    resolution: int | None = None,
    batch_size: int = 8,
) -> dict:
    """``feature_report`` (FID, KID, precision, recall and the real-vs-real floor) of the seeds'
    normal maps against the real normal-map features ``reals``."""
    maps = generated_normal_maps(gan, seeds, render_labels, condition_labels, truncation_psi, resolution, batch_size)
    fakes = encoder.features(images_to_uint8(maps), batch_size=max(batch_size, 64))
    return feature_report(reals, fakes, k, kid_subset_size, kid_subsets, seed)
