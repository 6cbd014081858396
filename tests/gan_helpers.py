"""Tiny GAN configurations and datasets for the wysiwyg_gan tests (CPU, seconds per step)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from learned_sampler import LearnedSamplerConfig
from wysiwyg_gan.config import DiscriminatorConfig, EvaluationConfig, OptimConfig, TrainConfig
from wysiwyg_gan.data.dataset import write_dataset
from wysiwyg_gan.networks.triplane import GeneratorConfig
from wysiwyg_gan.orbit_cameras import orbit_camera_labels
from wysiwyg_gan.rendering import RenderConfig
from wysiwyg_gan.schedule import ScheduleConfig

TINY_RESOLUTION = 16


def tiny_generator_config() -> GeneratorConfig:
    return GeneratorConfig(
        z_dim=16,
        w_dim=16,
        backbone_resolution=8,
        channel_base=64,
        channel_max=16,
        plane_channels=8,
        plane_block_channels=8,
        sdf_hidden=16,
        geometry_features=8,
        color_hidden=16,
        mlp_backend="torch",
    )


def tiny_schedule(total_images: int = 48) -> ScheduleConfig:
    """Every stage within ``total_images`` (batch 4: 12 steps), milestones every few steps."""
    return ScheduleConfig(
        total_images=total_images,
        low_resolution=8,
        mid_resolution=8,
        full_resolution=TINY_RESOLUTION,
        mid_resolution_start=0,
        mid_resolution_ramp=1,
        full_resolution_start=32,
        full_resolution_ramp=4,
        beta_target_start=8,
        beta_target_ramp=8,
        r1_gammas=((0, 1.0), (32, 4.0)),
        color_lr_multipliers=((0, 2.0), (40, 1.0)),
        supervise_sampler_start=16,
        render_with_sampler_start=24,
        swap_fade_images=16,
    )


def tiny_train_config(out: Path, data: Path, **overrides) -> TrainConfig:
    config = TrainConfig(
        preset="cpu",
        data=data,
        out=out,
        batch=4,
        device="cpu",
        checkpoint_every=16,
        snapshot_every=1000,
        log_every=1,
        snapshot_seeds=2,
        snapshot_views=2,
        progress=False,
        generator=tiny_generator_config(),
        discriminator=DiscriminatorConfig(channel_base=64, channel_max=16, mbstd_group_size=2),
        sampler=LearnedSamplerConfig.paper(
            num_bins=8,
            probe_samples=16,
            downscale=4,
            cnn_width=8,
            cnn_probe_skip=True,
            adaptive_low=4,
            adaptive_high=8,
            patch_size=8,
            target_samples=16,
        ),
        render=RenderConfig(coarse_samples=4, fine_samples=4),
        schedule=tiny_schedule(),
        optim=OptimConfig(sampler_lr=1e-3, r1_interval=2, ema_images=16),
        evaluation=EvaluationConfig(every=-1),  # test_gan_training's evaluation test turns it on
    )
    return dataclasses.replace(config, **overrides)


def write_tiny_dataset(path: Path, num_images: int = 8, resolution: int = TINY_RESOLUTION, seed: int = 0) -> Path:
    """Smooth random images with frontal-biased orbit cameras, in EG3D's format."""
    generator = torch.Generator().manual_seed(seed)
    yaw = math.pi / 2 + 0.3 * torch.randn(num_images, generator=generator)
    pitch = math.pi / 2 + 0.1 * torch.randn(num_images, generator=generator)
    labels = orbit_camera_labels(yaw, pitch).numpy()
    coarse = torch.rand(num_images, 3, 4, 4, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(resolution, resolution), mode="bilinear")
    images = (images.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    write_dataset(path, images, labels)
    return path


def write_tiny_checkpoint(folder: Path, images_seen: int | None = None, seed: int = 0) -> Path:
    """An untrained tiny generator saved as a checkpoint (its SDF is the initial sphere).

    ``images_seen`` defaults to the end of the tiny schedule, where rendering uses the learned
    sampler; pass 0 for a checkpoint that renders with two-pass sampling.
    """
    from wysiwyg_gan.checkpoint import checkpoint_name, save_checkpoint
    from wysiwyg_gan.data.dataset import CameraImageDataset
    from wysiwyg_gan.training import GANTrainer

    folder = Path(folder)
    data = folder / "data"
    if not data.exists():
        write_tiny_dataset(data)
    config = tiny_train_config(folder / "run", data, seed=seed)
    trainer = GANTrainer(config, CameraImageDataset(data), torch.device("cpu"))
    trainer.images_seen = config.schedule.total_images if images_seen is None else images_seen
    return save_checkpoint(trainer.state_dict(), folder / "run" / checkpoint_name(trainer.images_seen))
