"""A trained generator for use after training: load a checkpoint, make fields, render them.

``TrainedGAN`` holds the EMA generator and the proposal CNN of a checkpoint with its
configuration, and renders the way the run rendered at the end of its schedule (the learned
sampler once the schedule switched to it, two-pass sampling before), unless a ``RenderOverride``
picks another renderer or budget (the paper's Table 3: quality against samples per ray, learned
sampler against two-pass, from one trained checkpoint). Rendering is deterministic:
interval midpoints instead of stratified jitter, constant noise buffers by default. The helpers
at the end render a list of seeds from given cameras (``render_seeds``, ``orbit_labels``,
``render_cameras``), as every metric and tool does. Used by ``wysiwyg_gan.generate``, the metric
modules, ``wysiwyg_gan.evaluation`` and ``wysiwyg_gan.invert``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from learned_sampler import LearnedSampler
from learned_sampler.validation import check_positive_int
from wysiwyg_gan.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from wysiwyg_gan.config import TrainConfig, config_from_json
from wysiwyg_gan.networks.triplane import TriplaneField, TriplaneGenerator
from wysiwyg_gan.rendering import RenderConfig, RenderedImages, render_depth_normals, render_generator
from wysiwyg_gan.schedule import ScheduleState, schedule_at

RendererMode = Literal["checkpoint", "learned", "two-pass"]


@dataclass(frozen=True)
class RenderOverride:
    """How a trained generator renders at evaluation time (``--renderer.*`` of ``generate`` and
    ``metrics``). Every option left at None keeps the checkpoint's value; options of the renderer
    that is not in use are errors, not silently ignored."""

    mode: RendererMode = "checkpoint"
    """``checkpoint``: as the run rendered where training stopped (learned sampler once the schedule
    switched to it, two-pass before); ``learned``: the learned sampler (its CNN must have been
    trained); ``two-pass``: EG3D's coarse + fine importance sampling."""
    budget: int | Literal["adaptive"] | None = None
    """Learned sampler: samples per ray, a fixed number >= 1 or ``adaptive`` (the low/high split
    below); None keeps the checkpoint's policy, or turns adaptive when an ``adaptive_*`` option is given."""
    adaptive_low: int | None = None
    """Learned sampler, adaptive budget: samples of most rays (paper: 16)."""
    adaptive_high: int | None = None
    """Learned sampler, adaptive budget: samples of the hardest rays, >= the low budget (paper: 32)."""
    adaptive_fraction: float | None = None
    """Learned sampler, adaptive budget: share of each image's rays given the high budget, in [0, 1]
    (paper: 0.1)."""
    coarse_samples: int | None = None
    """Two-pass: uniform coarse samples per ray, >= 2 (EG3D: 48)."""
    fine_samples: int | None = None
    """Two-pass: importance samples per ray drawn from the coarse weights, >= 1 (EG3D: 48)."""

    @property
    def learned_options(self) -> list[str]:
        names = ("budget", "adaptive_low", "adaptive_high", "adaptive_fraction")
        return [name for name in names if getattr(self, name) is not None]

    @property
    def two_pass_options(self) -> list[str]:
        return [name for name in ("coarse_samples", "fine_samples") if getattr(self, name) is not None]

    def check(self) -> None:
        """Raise ``ValueError`` (one line) for values that are wrong whatever the checkpoint."""
        if self.mode not in ("checkpoint", "learned", "two-pass"):
            raise ValueError(f"--renderer.mode must be checkpoint, learned or two-pass, got {self.mode!r}")
        if self.budget is not None and self.budget != "adaptive":
            if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
                raise ValueError(f"--renderer.budget must be an integer >= 1 or 'adaptive', got {self.budget!r}")
        for name in ("adaptive_low", "adaptive_high", "fine_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--renderer.{_flag(name)} must be >= 1, got {value}")
        if self.coarse_samples is not None and self.coarse_samples < 2:
            raise ValueError(f"--renderer.coarse-samples must be >= 2, got {self.coarse_samples}")
        fraction = self.adaptive_fraction
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError(f"--renderer.adaptive-fraction must be in [0, 1], got {fraction}")
        adaptive = [name for name in self.learned_options if name != "budget"]
        if isinstance(self.budget, int) and adaptive:
            flags = ", ".join(f"--renderer.{_flag(name)}" for name in adaptive)
            raise ValueError(f"--renderer.budget {self.budget} is a fixed budget; {flags} need an adaptive one")
        if self.mode == "learned" and self.two_pass_options:
            flags = ", ".join(f"--renderer.{_flag(name)}" for name in self.two_pass_options)
            raise ValueError(f"{flags} set the two-pass renderer, not --renderer.mode learned")
        if self.mode == "two-pass" and self.learned_options:
            flags = ", ".join(f"--renderer.{_flag(name)}" for name in self.learned_options)
            raise ValueError(f"{flags} set the learned sampler, not --renderer.mode two-pass")


def _flag(name: str) -> str:
    return name.replace("_", "-")


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
    renderer: RenderOverride = dataclasses.field(default_factory=RenderOverride)
    """How it renders (default: as the checkpoint's run did); change it with ``set_renderer``."""
    rays_rendered: int = dataclasses.field(default=0, init=False)
    """Rays rendered by ``render`` so far (for the mean samples per ray actually used)."""
    samples_rendered: float = dataclasses.field(default=0.0, init=False)
    """Field samples taken by ``render`` so far (the learned sampler's probe excluded)."""

    def __post_init__(self) -> None:
        self.set_renderer(self.renderer)

    @property
    def schedule(self) -> ScheduleState:
        """The schedule's state where training stopped (it decides how to render)."""
        return schedule_at(self.images_seen, self.config.schedule)

    @property
    def resolution(self) -> int:
        """The output resolution of the run."""
        return self.config.schedule.full_resolution

    @property
    def sampler_trained(self) -> bool:
        """Whether the proposal CNN was supervised before the checkpoint (else it predicts noise)."""
        return self.images_seen > 0 and schedule_at(self.images_seen - 1, self.config.schedule).supervise_sampler

    @property
    def uses_learned_sampler(self) -> bool:
        """Whether ``render`` uses the learned sampler (else two-pass sampling)."""
        return self._learned_for(self.renderer)

    def _learned_for(self, renderer: RenderOverride) -> bool:
        if renderer.mode == "checkpoint":
            return self.schedule.render_with_sampler
        return renderer.mode == "learned"

    def set_renderer(self, renderer: RenderOverride) -> None:
        """Render with ``renderer`` from now on; ``ValueError`` (one line) when it does not apply to
        this checkpoint. ``config`` and ``sampler`` stay as saved: the budget goes to a shallow copy
        of the sampler that shares its CNN, so the trainer's sampler, which the evaluation during
        training hands in, keeps its own policy."""
        renderer.check()
        learned = self._learned_for(renderer)
        if renderer.mode == "checkpoint":
            # check() cannot know which renderer the checkpoint uses; options for the other one are errors.
            wrong = renderer.two_pass_options if learned else renderer.learned_options
            if wrong:
                flags = ", ".join(f"--renderer.{_flag(name)}" for name in wrong)
                used = "the learned sampler" if learned else "two-pass sampling"
                raise ValueError(f"{flags}: this checkpoint renders with {used}; pick the other with --renderer.mode")
        if renderer.mode == "learned" and not self.sampler_trained:
            raise ValueError(
                f"--renderer.mode learned: the sampler of {self.checkpoint.name} was never trained ({self.images_seen} "
                f"images seen, its supervision starts at {self.config.schedule.supervise_sampler_start}); "
                "use --renderer.mode two-pass"
            )
        sampler = self._sampler_with_budget(renderer) if learned else self.sampler
        self.renderer, self._render_sampler = renderer, sampler

    def _sampler_with_budget(self, renderer: RenderOverride) -> LearnedSampler:
        if not renderer.learned_options:
            return self.sampler
        saved = self.config.sampler
        if isinstance(renderer.budget, int):
            sampler_config = dataclasses.replace(saved, budget=renderer.budget)
        else:  # "adaptive", or adaptive options alone
            low = saved.adaptive_low if renderer.adaptive_low is None else renderer.adaptive_low
            high = saved.adaptive_high if renderer.adaptive_high is None else renderer.adaptive_high
            fraction = saved.adaptive_fraction if renderer.adaptive_fraction is None else renderer.adaptive_fraction
            if low > high:
                raise ValueError(
                    f"the adaptive budget's low ({low}) must be <= its high ({high}) "
                    "(--renderer.adaptive-low, --renderer.adaptive-high; unset ones are the checkpoint's)"
                )
            sampler_config = dataclasses.replace(
                saved, budget="adaptive", adaptive_low=low, adaptive_high=high, adaptive_fraction=fraction
            )
        sampler = copy.copy(self.sampler)  # shares the proposal CNN's submodules
        sampler.config = sampler_config
        return sampler

    @property
    def render_config(self) -> RenderConfig:
        """Ray bounds and two-pass sample counts ``render`` uses (the checkpoint's, overridden)."""
        counts = {
            name: getattr(self.renderer, name)
            for name in ("coarse_samples", "fine_samples")
            if getattr(self.renderer, name) is not None
        }
        return dataclasses.replace(self.config.render, **counts) if counts else self.config.render

    @property
    def render_sampler(self) -> LearnedSampler:
        """The learned sampler ``render`` uses: the checkpoint's, with the override's budget."""
        return self._render_sampler

    @property
    def mean_samples_per_ray(self) -> float | None:
        """Mean field samples per ray over everything ``render`` rendered; None before any render."""
        return self.samples_rendered / self.rays_rendered if self.rays_rendered else None

    def renderer_report(self) -> dict:
        """The renderer in effect, for JSON reports: mode, its budget or sample counts, the
        requested override and the mean samples per ray actually used so far."""
        report: dict = {"mode": "learned sampler" if self.uses_learned_sampler else "two-pass"}
        report["source"] = "checkpoint" if self.renderer == RenderOverride() else "override"
        if self.uses_learned_sampler:
            config = self.render_sampler.config
            report["budget"] = config.budget
            if config.budget == "adaptive":
                report.update(
                    adaptive_low=config.adaptive_low,
                    adaptive_high=config.adaptive_high,
                    adaptive_fraction=config.adaptive_fraction,
                )
            report["expected_samples_per_ray"] = config.mean_budget
            report["probe_samples_per_ray"] = config.probe_samples_per_ray
        else:
            render = self.render_config
            report.update(coarse_samples=render.coarse_samples, fine_samples=render.fine_samples)
            report["expected_samples_per_ray"] = float(render.coarse_samples + render.fine_samples)
        report["samples_per_ray"] = self.mean_samples_per_ray
        report["override"] = {
            key: value for key, value in dataclasses.asdict(self.renderer).items() if value is not None
        }
        return report

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
        learned = self.uses_learned_sampler
        if learned and resolution % downscale:
            raise ValueError(f"resolution {resolution} must be divisible by the sampler's downscale {downscale}")
        images = render_generator(
            field, labels, resolution, self.render_sampler, self.render_config, learned=learned, stratified=False
        )
        rays = images.image.shape[0] * resolution * resolution
        self.rays_rendered += rays
        self.samples_rendered += float(images.samples_per_ray) * rays
        return images

    def normals(self, field: TriplaneField, images: RenderedImages, labels: Float[Tensor, "batch 25"]) -> Tensor:
        """World-space unit normals ``(B, 3, R, R)`` at each pixel's expected surface point."""
        return render_depth_normals(field, images, labels, self.config.render)


def load_trained_gan(
    path: str | Path, device: str | torch.device = "cpu", renderer: RenderOverride | None = None
) -> TrainedGAN:
    """The generator of checkpoint ``path`` (written by ``wysiwyg_gan.train``, or a run folder: its
    newest checkpoint) on ``device``, rendering as ``renderer`` says (default: as the run did);
    ``ValueError`` when ``renderer`` does not apply to the checkpoint."""
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
    images_seen = int(state["images_seen"])
    return TrainedGAN(config, generator, sampler, images_seen, device, path, renderer or RenderOverride())


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

