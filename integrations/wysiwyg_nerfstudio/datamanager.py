"""Training batches of two kinds: image-structured rays for the sampler, random rays for the field.

The probe and the proposal CNN need rays laid out as images (patches), but a field trained on
patches learns far more slowly than on rays drawn at random over all training images: nerfacto
itself, trained on four 16x16 patches per batch, reached 21.8 dB on the occluder scene where it
reaches 31.3 dB on random rays (``benchmarks/RESULTS.md``). So each training batch holds both:

* ``sampler_rays_per_batch`` rays from ``pixel_sampler`` (patches by default), which train the
  proposal CNN through the sampler's supervision loss;
* ``train_num_rays_per_batch`` rays drawn uniformly over the training images, which the model
  renders with samples from each image's cached whole-image distribution (the model's
  ``distribution_max_age``) and which alone carry the RGB loss.

The patch rays come first. The bundle's metadata marks the field rays (``FIELD_RAY_KEY``) and
gives every ray's ``(camera, row, column)`` (``PIXEL_KEY``) so the model can look their
distributions up. Evaluation batches (``next_eval``) stay patches only, rendered as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig

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

    def __post_init__(self) -> None:
        if self.sampler_rays_per_batch < 1:
            raise ValueError(f"sampler_rays_per_batch must be >= 1, got {self.sampler_rays_per_batch}")


class WysiwygDataManager(VanillaDataManager):
    """Training batches of sampler patches followed by random field rays (module docstring)."""

    config: WysiwygDataManagerConfig
    train_field_pixel_sampler: PixelSampler

    def setup_train(self) -> None:
        super().setup_train()
        self.train_pixel_sampler = self._get_pixel_sampler(self.train_dataset, self.config.sampler_rays_per_batch)
        self.train_field_pixel_sampler = PixelSamplerConfig().setup(
            num_rays_per_batch=self.config.train_num_rays_per_batch
        )

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        self.train_count += 1
        image_batch = next(self.iter_train_image_dataloader)
        sampler_batch = self.train_pixel_sampler.sample(image_batch)
        field_batch = self.train_field_pixel_sampler.sample(image_batch)
        batch = concatenate_pixel_batches(sampler_batch, field_batch)
        ray_bundle = self.train_ray_generator(batch["indices"])
        is_field_ray = torch.zeros(len(batch["indices"]), 1, dtype=torch.bool, device=ray_bundle.origins.device)
        is_field_ray[len(sampler_batch["indices"]) :] = True
        metadata = dict(ray_bundle.metadata or {})
        metadata[FIELD_RAY_KEY] = is_field_ray
        metadata[PIXEL_KEY] = batch["indices"].to(ray_bundle.origins.device)
        ray_bundle.metadata = metadata
        return ray_bundle, batch


def concatenate_pixel_batches(first: Dict[str, Tensor], second: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The per-ray entries of two pixel batches, ``first``'s rays then ``second``'s."""
    if first.keys() != second.keys():
        raise ValueError(f"pixel batches with different keys: {sorted(first)} and {sorted(second)}")
    return {key: torch.cat([first[key], second[key].to(first[key].device)]) for key in first}
