"""A trained generator for use after training: load a checkpoint, make fields, render them.

``TrainedGAN`` holds the EMA generator and the proposal CNN of a checkpoint with its
configuration, and renders the way the run rendered at the end of its schedule (the learned
sampler once the schedule switched to it, two-pass sampling before). Rendering is deterministic:
interval midpoints instead of stratified jitter, constant noise buffers by default. The helpers
at the end render a list of seeds from given cameras (``render_seeds``, ``orbit_labels``,
``render_cameras``), as every metric and tool does. Used by ``wysiwyg_gan.generate``, the metric
modules, ``wysiwyg_gan.evaluation`` and ``wysiwyg_gan.invert``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from learned_sampler import LearnedSampler
from learned_sampler.validation import check_positive_int
from wysiwyg_gan.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from wysiwyg_gan.config import TrainConfig, config_from_json
from wysiwyg_gan.networks.triplane import TriplaneField, TriplaneGenerator
from wysiwyg_gan.rendering import RenderedImages, render_depth_normals, render_generator
from wysiwyg_gan.schedule import ScheduleState, schedule_at


@dataclass
class TrainedGAN:
    """The generator (EMA weights) and proposal CNN of a checkpoint, in eval mode."""

    config: TrainConfig
    generator: TriplaneGenerator
    sampler: LearnedSampler
    images_seen: int
    device: torch.device
    checkpoint: Path
    """The checkpoint file it was loaded from."""

    @property
    def schedule(self) -> ScheduleState:
        """The schedule's state where training stopped (it decides how to render)."""
        return schedule_at(self.images_seen, self.config.schedule)

    @property
    def resolution(self) -> int:
        """The output resolution of the run."""
        return self.config.schedule.full_resolution

    @property
    def uses_learned_sampler(self) -> bool:
        return self.schedule.render_with_sampler

    def latents(self, seeds: list[int]) -> Float[Tensor, "batch z_dim"]:
        """One latent per seed, the same for a seed on every device."""
        z_dim = self.config.generator.z_dim
        rows = [torch.randn(z_dim, generator=torch.Generator().manual_seed(seed)) for seed in seeds]
        return torch.stack(rows).to(self.device)

    def mapping(
        self,
        z: Float[Tensor, "batch z_dim"],
        condition: Float[Tensor, "batch 25"],
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> Float[Tensor, "batch num_ws w_dim"]:
        """``ws`` of latents ``z`` conditioned on cameras ``condition``; truncation applies to the
        first ``truncation_cutoff`` ws (all when None)."""
        return self.generator.mapping(z, condition, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)

    def field(self, ws: Float[Tensor, "batch num_ws w_dim"], noise_mode: str = "const") -> TriplaneField:
        return self.generator.synthesize(ws, noise_mode=noise_mode)

    def render(
        self, field: TriplaneField, labels: Float[Tensor, "batch 25"], resolution: int | None = None
    ) -> RenderedImages:
        """Images, depth and opacity of ``field`` from cameras ``labels`` at ``resolution`` (default:
        the run's output resolution); gradients flow when enabled (inversion)."""
        resolution = resolution or self.resolution
        downscale = self.sampler.config.downscale
        if self.uses_learned_sampler and resolution % downscale:
            raise ValueError(f"resolution {resolution} must be divisible by the sampler's downscale {downscale}")
        return render_generator(
            field, labels, resolution, self.sampler, self.config.render, learned=self.uses_learned_sampler, stratified=False
        )

    def normals(self, field: TriplaneField, images: RenderedImages, labels: Float[Tensor, "batch 25"]) -> Tensor:
        """World-space unit normals ``(B, 3, R, R)`` at each pixel's expected surface point."""
        return render_depth_normals(field, images, labels, self.config.render)


def load_trained_gan(path: str | Path, device: str | torch.device = "cpu") -> TrainedGAN:
    """The generator of checkpoint ``path`` (written by ``wysiwyg_gan.train``, or a run folder: its
    newest checkpoint) on ``device``."""
    device = torch.device(device)
    path = Path(path)
    if path.is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise CheckpointError(f"{path}: the folder holds no checkpoint-*.pt file")
        path = newest
    state = load_checkpoint(path, map_location=device)
    try:
        config = config_from_json(state["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: the checkpoint's configuration is unreadable: {error!r}") from error
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        generator = TriplaneGenerator(config.generator.on_device(device))
    sampler = LearnedSampler(config.sampler)
    for name, module in (("generator_ema", generator), ("sampler", sampler)):
        try:
            module.load_state_dict(state[name])
        except (KeyError, RuntimeError) as error:
            raise CheckpointError(f"{path}: the checkpoint's {name} does not match its configuration: {error}") from error
    generator.to(device).eval().requires_grad_(False)
    sampler.to(device).eval().requires_grad_(False)
    return TrainedGAN(config, generator, sampler, int(state["images_seen"]), device, path)


# ----- rendering seeds from cameras, for the metrics and tools -----


def seed_batches(seeds: Sequence[int], batch_size: int):
    """``seeds`` in lists of at most ``batch_size``, in order."""
    check_positive_int("batch_size", batch_size)
    for start in range(0, len(seeds), batch_size):
        yield list(seeds[start : start + batch_size])


def render_seeds(
    gan: TrainedGAN,
    seeds: Sequence[int],
    render_labels: Float[Tensor, "num_seeds 25"],
    condition_labels: Float[Tensor, "num_seeds 25"],
    truncation_psi: float = 1.0,
    resolution: int | None = None,
) -> RenderedImages:
    """One forward pass: the latents of ``seeds``, conditioned on ``condition_labels``, rendered from
    ``render_labels`` (one row per seed)."""
    condition = condition_labels.to(gan.device)
    field = gan.field(gan.mapping(gan.latents(list(seeds)), condition, truncation_psi))
    return gan.render(field, render_labels.to(gan.device), resolution)


def render_cameras(reals, count: int, seed: int) -> Tensor:
    """``count`` render cameras drawn uniformly from the real set's labels (torch seed ``seed``)."""
    picks = torch.randint(len(reals.labels), (count,), generator=torch.Generator().manual_seed(seed))
    return reals.labels[picks]

