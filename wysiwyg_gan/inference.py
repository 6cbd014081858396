"""A trained generator for use after training: load a checkpoint, make fields, render them.

``TrainedGAN`` holds the EMA generator and the proposal CNN of a checkpoint with its
configuration, and renders the way the run rendered at the end of its schedule (the learned
sampler once the schedule switched to it, two-pass sampling before). Rendering is deterministic:
interval midpoints instead of stratified jitter, constant noise buffers by default.
Used by ``wysiwyg_gan.generate``, ``wysiwyg_gan.metrics`` and ``wysiwyg_gan.invert``.
"""

from __future__ import annotations

import contextlib

from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from learned_sampler import LearnedSampler
from wysiwyg_gan.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from wysiwyg_gan.config import TrainConfig
from wysiwyg_gan.networks.triplane import TriplaneField, TriplaneGenerator
from wysiwyg_gan.rendering import RenderedImages, predict_proposal, render_depth_normals, render_two_pass, render_with_proposal
from wysiwyg_gan.schedule import ScheduleState, schedule_at
from wysiwyg_gan.training import config_from_json


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``, with a clear error when CUDA is absent."""
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise SystemExit(f"--device {name!r} is not a device name (auto, cpu, cuda, cuda:N)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


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
        return self.generator.field(self.generator.synthesize_planes(ws, noise_mode=noise_mode))

    def render(
        self, field: TriplaneField, labels: Float[Tensor, "batch 25"], resolution: int | None = None
    ) -> RenderedImages:
        """Images, depth and opacity of ``field`` from cameras ``labels`` at ``resolution`` (default:
        the run's output resolution); gradients flow when enabled (inversion)."""
        resolution = resolution or self.resolution
        render_config = self.config.render
        if not self.uses_learned_sampler:
            return render_two_pass(field, labels, resolution, render_config, stratified=False)
        downscale = self.sampler.config.downscale
        if resolution % downscale:
            raise ValueError(f"resolution {resolution} must be divisible by the sampler's downscale {downscale}")
        with torch.no_grad():
            _, proposal = predict_proposal(field, labels, resolution, self.sampler, render_config)
        return render_with_proposal(field, labels, resolution, proposal, self.sampler, render_config)

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
