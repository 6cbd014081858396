"""The training schedule of the paper's Table A3 as one pure function of the images seen.

Paper (millions of images shown to D, 28.2 in all):

=============================  ==========================================================
R1 gamma                       1 until 18, 4 until 25, then 2
rendering resolution           64 until 10; 64 -> 128 over 1; 128 -> 512 from 18 over 0.2
B_target                       0.01 until 10, then 0.01 -> 0.001 over 1
MLP_c learning-rate multiplier 2 until 25, then 1
supervise the sampler          from 16
render with the sampler        from 17
=============================  ==========================================================

``ScheduleConfig.learned_sampler = False`` (the paper's "- learned sampler" ablation) keeps
two-pass rendering at every stage while the sampler is still supervised from its milestone.

Generator pose conditioning with swapping follows EG3D: the probability of conditioning on
another image's camera fades from 1 to ``swap_probability`` over ``swap_fade_images``.
``ScheduleConfig.scaled`` shrinks every milestone by one factor (the CPU preset).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleConfig:
    """Milestones in images shown to the discriminator; defaults are the paper's FFHQ-512 run."""

    total_images: int = 28_200_000
    """Length of the run."""
    low_resolution: int = 64
    """Rendering resolution of the first stage (rendered images are upsampled to the output size)."""
    mid_resolution: int = 128
    """Rendering resolution after the first ramp."""
    full_resolution: int = 512
    """Output resolution: every pixel is rendered from here on."""
    mid_resolution_start: int = 10_000_000
    """When the ramp from low to mid resolution starts."""
    mid_resolution_ramp: int = 1_000_000
    """Length of that ramp."""
    full_resolution_start: int = 18_000_000
    """When the ramp from mid to full resolution starts."""
    full_resolution_ramp: int = 200_000
    """Length of that ramp."""
    beta_target_initial: float = 0.01
    """B_target of L_surface at first."""
    beta_target_final: float = 0.001
    """B_target after its ramp."""
    beta_target_start: int = 10_000_000
    """When B_target starts to decrease."""
    beta_target_ramp: int = 1_000_000
    """Length of the B_target ramp."""
    r1_gammas: tuple[tuple[int, float], ...] = ((0, 1.0), (18_000_000, 4.0), (25_000_000, 2.0))
    """R1 weight from each milestone on: (images, gamma) pairs in increasing order."""
    color_lr_multipliers: tuple[tuple[int, float], ...] = ((0, 2.0), (25_000_000, 1.0))
    """Learning-rate multiplier of MLP_c from each milestone on."""
    supervise_sampler_start: int = 16_000_000
    """When the proposal CNN starts to be supervised (the probe and its losses start too)."""
    render_with_sampler_start: int = 17_000_000
    """When rendering switches from standard two-pass sampling to the learned sampler."""
    learned_sampler: bool = True
    """Render with the learned sampler from ``render_with_sampler_start`` on. Off is Table 4's
    "- learned sampler" ablation: two-pass rendering at every stage (in training and in every tool
    that renders the checkpoint), with every loss kept: L_dec on the coarse pass's uniform samples,
    L_surface, and L_sampler, which still trains the (then unused) proposal CNN from
    ``supervise_sampler_start``. The paper reports that the model "cannot learn meaningful 3D
    geometry with limited depth budgets": FID 38.29, FID-N 93.88, NFS 30.95 against 4.97, 60.76,
    29.35 with it."""
    swap_probability: float = 0.5
    """Final probability of conditioning G on another image's camera (EG3D's gpc_reg_prob)."""
    swap_fade_images: int = 1_000_000
    """Images over which that probability fades in from 1 (EG3D: 1000 kimg)."""

    def __post_init__(self) -> None:
        if self.total_images < 1:
            raise ValueError(f"total_images must be >= 1, got {self.total_images}")
        if not self.low_resolution <= self.mid_resolution <= self.full_resolution:
            raise ValueError("resolutions must satisfy low <= mid <= full")
        if not isinstance(self.learned_sampler, bool):
            raise ValueError(f"learned_sampler must be a bool, got {self.learned_sampler!r}")
        if self.render_with_sampler_start < self.supervise_sampler_start:
            raise ValueError("the sampler must be supervised before rendering with it")
        for name in ("r1_gammas", "color_lr_multipliers"):
            steps = getattr(self, name)
            if not steps or steps[0][0] != 0 or any(a[0] >= b[0] for a, b in zip(steps[:-1], steps[1:])):
                raise ValueError(f"{name} must start at 0 images and increase, got {steps}")

    def scaled(self, factor: float) -> ScheduleConfig:
        """The same schedule with every milestone and ramp multiplied by ``factor``."""
        changes = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_start"):
                changes[field.name] = round(value * factor)
            elif field.name.endswith(("_ramp", "_images")):
                changes[field.name] = max(1, round(value * factor))
            elif field.name in ("r1_gammas", "color_lr_multipliers"):
                changes[field.name] = tuple((round(images * factor), v) for images, v in value)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ScheduleState:
    """Everything the schedule decides for one training step."""

    render_resolution: int
    """Side of the rendered image (upsampled to ``full_resolution`` for the discriminator)."""
    beta_target: float
    """B_target of L_surface."""
    r1_gamma: float
    """R1 weight."""
    color_lr_multiplier: float
    """Learning-rate multiplier of MLP_c."""
    supervise_sampler: bool
    """Train the proposal CNN (and run the probe) this step."""
    render_with_sampler: bool
    """Render with the learned sampler instead of two-pass sampling (never without
    ``ScheduleConfig.learned_sampler``)."""
    swap_probability: float
    """Probability of conditioning G on another image's camera."""
    stage: str
    """Name of the stage, for progress displays."""


def _ramp(images: int, start: int, length: int, a: float, b: float) -> float:
    fraction = min(max((images - start) / max(length, 1), 0.0), 1.0)
    return a * (1.0 - fraction) + b * fraction  # exact at both ends


def _piecewise(images: int, steps: tuple[tuple[int, float], ...]) -> float:
    value = steps[0][1]
    for start, step_value in steps:
        if images >= start:
            value = step_value
    return value


def schedule_at(images_seen: int, config: ScheduleConfig) -> ScheduleState:
    """The schedule's values after ``images_seen`` images (a pure function)."""
    if images_seen < 0:
        raise ValueError(f"images_seen must be >= 0, got {images_seen}")
    resolution = _ramp(
        images_seen, config.mid_resolution_start, config.mid_resolution_ramp, config.low_resolution, config.mid_resolution
    )
    if images_seen >= config.full_resolution_start:
        resolution = _ramp(
            images_seen,
            config.full_resolution_start,
            config.full_resolution_ramp,
            config.mid_resolution,
            config.full_resolution,
        )
    supervise = images_seen >= config.supervise_sampler_start
    with_sampler = config.learned_sampler and images_seen >= config.render_with_sampler_start
    render_resolution = int(round(resolution))
    if with_sampler and render_resolution == config.full_resolution:
        stage = "full resolution, learned sampler"
    elif with_sampler:
        stage = "learned sampler"
    elif supervise:
        stage = "sampler supervision"
    else:
        stage = "two-pass sampling"
    return ScheduleState(
        render_resolution=render_resolution,
        beta_target=_ramp(
            images_seen, config.beta_target_start, config.beta_target_ramp, config.beta_target_initial, config.beta_target_final
        ),
        r1_gamma=_piecewise(images_seen, config.r1_gammas),
        color_lr_multiplier=_piecewise(images_seen, config.color_lr_multipliers),
        supervise_sampler=supervise,
        render_with_sampler=with_sampler,
        swap_probability=_ramp(images_seen, 0, config.swap_fade_images, 1.0, config.swap_probability),
        stage=stage,
    )
