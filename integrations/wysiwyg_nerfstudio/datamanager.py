"""Training batches of two kinds: image-structured rays for the sampler, random rays for the field.

The probe and the proposal CNN need rays laid out as images (patches), but a field trained on
patches learns far more slowly than on rays drawn at random over the training images, nerfacto's
own field included (``benchmarks/RESULTS.md``, nerfstudio section). So each training batch holds
both:

* ``sampler_rays_per_batch`` rays from ``pixel_sampler`` (patches by default), which train the
  proposal CNN through the sampler's supervision loss;
* ``train_num_rays_per_batch`` rays drawn uniformly over the regions of the ``FieldRayPool``
  (up to ``field_ray_regions`` training images, a ``field_ray_region_size`` square of each, chosen
  anew every ``field_ray_refresh_every`` iterations), which the model renders with samples from
  the regions' predictions and which alone carry the RGB loss. The model fills the pool in its
  training callback.

The patch rays come first. The bundle's metadata marks the field rays (``FIELD_RAY_KEY``) and
gives every ray's ``(camera, row, column)`` (``PIXEL_KEY``). Evaluation batches (``next_eval``)
stay patches only, rendered as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig

from wysiwyg_nerfstudio.field_ray_pool import FieldRayPool

FIELD_RAY_KEY = "wysiwyg_field_ray"
"""Ray-bundle metadata ``(N, 1)`` bool: the ray trains the field (else it is a sampler ray)."""
PIXEL_KEY = "wysiwyg_pixel"
"""Ray-bundle metadata ``(N, 3)`` long: the ray's training image, row and column."""


@dataclass
class WysiwygDataManagerConfig(VanillaDataManagerConfig):
    """``VanillaDataManagerConfig`` whose training batches add random field rays to the sampler's patches."""

    _target: Type = field(default_factory=lambda: WysiwygDataManager)
    """target class to instantiate"""
    sampler_rays_per_batch: int = 1024
    """Training rays per batch drawn by ``pixel_sampler`` (patches) for the probe and the proposal
    CNN; a multiple of the patch area. ``train_num_rays_per_batch`` counts the field's random rays."""
    field_ray_regions: int = 64
    """Training images the field's random rays come from at a time (all when fewer)."""
    field_ray_region_size: int = 128
    """Side in pixels of the region of each of those images that is predicted and drawn from (the
    whole image when smaller)."""
    field_ray_refresh_every: int = 100
    """Training iterations between new choices and predictions of the regions."""

    def __post_init__(self) -> None:
        for name in ("sampler_rays_per_batch", "field_ray_regions", "field_ray_region_size", "field_ray_refresh_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_num_images_to_sample_from != -1:
            raise ValueError(
                "WysiwygDataManager draws field rays from regions of all training images: keep "
                f"train_num_images_to_sample_from at -1 (got {self.train_num_images_to_sample_from}); "
                "field_ray_regions bounds how many images are used at a time"
            )


class WysiwygDataManager(VanillaDataManager):
    """Training batches of sampler patches followed by random field rays (module docstring)."""

    config: WysiwygDataManagerConfig
    field_ray_pool: FieldRayPool

    def setup_train(self) -> None:
        super().setup_train()
        self.train_pixel_sampler = self._get_pixel_sampler(self.train_dataset, self.config.sampler_rays_per_batch)
        self.field_ray_pool = FieldRayPool(
            self.config.field_ray_regions, self.config.field_ray_region_size, self.config.field_ray_refresh_every
        )

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        self.train_count += 1
        image_batch = next(self.iter_train_image_dataloader)
        if "mask" in image_batch:
            raise ValueError("wysiwyg-sampler's field rays do not support masks yet; remove the dataset's masks")
        sampler_batch = self.train_pixel_sampler.sample(image_batch)
        field_pixels = self.field_ray_pool.sample_pixels(self.config.train_num_rays_per_batch)
        batch = concatenate_pixel_batches(sampler_batch, gather_pixels(image_batch, field_pixels))
        ray_bundle = self.train_ray_generator(batch["indices"])
        device = ray_bundle.origins.device
        is_field_ray = torch.zeros(len(batch["indices"]), 1, dtype=torch.bool, device=device)
        is_field_ray[len(sampler_batch["indices"]) :] = True
        metadata = dict(ray_bundle.metadata or {})
        metadata[FIELD_RAY_KEY] = is_field_ray
        metadata[PIXEL_KEY] = batch["indices"].to(device)
        ray_bundle.metadata = metadata
        return ray_bundle, batch


def gather_pixels(image_batch: Dict, pixels: Tensor) -> Dict[str, Tensor]:
    """A pixel batch (as nerfstudio's pixel samplers return) of ``image_batch`` at ``pixels`` ``(camera, row, column)``."""
    position = torch.full((int(image_batch["image_idx"].max()) + 1,), -1, dtype=torch.long)
    position[image_batch["image_idx"].cpu().long()] = torch.arange(len(image_batch["image_idx"]))
    slots = position[pixels[:, 0]]
    if bool((slots < 0).any()):
        raise KeyError("field-ray pixels of images missing from the image batch")
    rows, columns = pixels[:, 1], pixels[:, 2]
    gathered: Dict[str, Tensor] = {}
    for key, value in image_batch.items():
        if key == "image_idx" or value is None:
            continue
        if isinstance(value, list):  # images of different sizes
            gathered[key] = torch.stack([value[s][r, c] for s, r, c in zip(slots.tolist(), rows.tolist(), columns.tolist())])
        else:
            gathered[key] = value[slots.to(value.device), rows.to(value.device), columns.to(value.device)]
    gathered["indices"] = pixels
    return gathered


def concatenate_pixel_batches(first: Dict[str, Tensor], second: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The per-ray entries of two pixel batches, ``first``'s rays then ``second``'s."""
    if first.keys() != second.keys():
        raise ValueError(f"pixel batches with different keys: {sorted(first)} and {sorted(second)}")
    return {key: torch.cat([first[key], second[key].to(first[key].device)]) for key in first}
