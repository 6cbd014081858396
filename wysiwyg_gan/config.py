"""Training configuration (dataclasses driven by tyro) and the presets ``cpu``, ``cpu-long``,
``ffhq512``, ``afhq512``.

Values the paper does not give are marked "not in the paper" on their field, with the choice made.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from learned_sampler import LearnedSamplerConfig
from wysiwyg_gan.networks.triplane import GeneratorConfig
from wysiwyg_gan.rendering import RenderConfig
from wysiwyg_gan.schedule import ScheduleConfig

PresetName = Literal["cpu", "cpu-long", "ffhq512", "afhq512"]


@dataclass
class DiscriminatorConfig:
    """StyleGAN2 residual discriminator conditioned on the camera (EG3D)."""

    channel_base: int = 32768
    """StyleGAN2 channel base (EG3D: 32768; not in the paper)."""
    channel_max: int = 512
    """Most channels of any layer."""
    mbstd_group_size: int = 4
    """Group size of the minibatch standard deviation layer."""


@dataclass
class LossConfig:
    """Weights of the generator objective (Eq. 12); the paper gives none of them.

    lambda_sampler is not a setting: L_sampler reaches only the proposal CNN (the probe and the
    targets are detached), which has its own Adam, and Adam's steps do not depend on the scale of
    the gradient, so any positive weight trains the CNN the same way (``optim.sampler_lr`` does set
    its pace)."""

    surface_weight: float = 100.0
    """lambda_surface on the mean squared (B - B_target) (not in the paper: chosen so that B follows
    its target within the B_target ramp)."""
    decision_weight: float = 0.05
    """lambda_dec on the mean of exp(-sharpness |s|) at the probe samples (not in the paper; StyleSDF's
    weight for its similar term)."""
    decision_sharpness: float = 100.0
    """Sharpness of L_dec, per world unit (the paper's text shows 2, which empties the scene; see
    ``wysiwyg_gan.losses.decision_boundary_loss``)."""
    decision_free_space: bool = False
    """Apply L_dec only in the empty space in front of the visible surfaces (the uniform samples
    after which a ray's transmittance is still above 1/2), not on the surfaces themselves. Over
    every sample L_dec is a minimal-surface loss that also rounds the shapes off (see
    ``wysiwyg_gan.losses.decision_boundary_loss``)."""
    beta_regularisation: bool = True
    """Apply L_surface (Eq. 10), which pulls the rendered beta image B towards ``B_target``. Off is
    Table 4's "- beta regularization" ablation: beta is free (L_surface is still logged as
    ``surface``, to follow B, but adds nothing to G's objective). The paper reports that the "SDF
    surface may get fuzzy": FID 5.27, FID-N 64.25, NFS 28.88 against 4.97, 60.76, 29.35 with it."""


@dataclass
class OptimConfig:
    """Adam settings (EG3D's; the paper gives none)."""

    generator_lr: float = 0.0025
    """Learning rate of G (mapping, synthesis, MLPs)."""
    discriminator_lr: float = 0.002
    """Learning rate of D."""
    mlp_lr_multiplier: float = 0.1
    """Learning rate of MLP_SDF and MLP_c relative to ``generator_lr`` (not in the paper). EG3D's
    decoder layers have an equalised learning rate, so Adam moves their weights by about
    lr / sqrt(fan-in) per step, and so does this multiplier (fan-ins of 32 to 128) for the plain
    layers kept here for tiny-cuda-nn. At 1, Adam rewrites the small weights that read the triplane
    features within a few steps, and every latent collapses onto one shape (measured in
    benchmarks/RESULTS.md). ``color_lr_multipliers`` scales MLP_c's rate further."""
    sampler_lr: float = 1e-4
    """Learning rate of the proposal CNN (not in the paper)."""
    betas: tuple[float, float] = (0.0, 0.99)
    """Adam betas of G and D."""
    r1_interval: int = 16
    """Lazy R1: the penalty runs every this many D steps, weighted by the interval."""
    ema_images: int = 10_000
    """Half-life of the EMA of G in images (EG3D: 10 kimg per 32 images of batch)."""
    ema_rampup: float | None = 0.05
    """EMA half-life is at most this fraction of the images seen (early training); None disables."""

    def __post_init__(self) -> None:
        if not self.mlp_lr_multiplier > 0:
            raise ValueError(f"optim.mlp_lr_multiplier must be > 0, got {self.mlp_lr_multiplier}")


@dataclass
class EvaluationConfig:
    """Metrics of the EMA generator while training (``wysiwyg_gan.evaluation``), with no download:
    encoder FID/KID, precision and recall against the real set, colour drift along an orbit,
    multi-view consistency and the number of latents that render nothing. Each evaluation goes
    to ``metrics.jsonl`` and TensorBoard (``eval/...``)."""

    every: int = 0
    """Images between evaluations; 0 evaluates only at the end of the run, a negative value never."""
    num_fakes: int = 256
    """Generated images for the distribution metrics (seeds 0 .. num_fakes - 1, no truncation)."""
    num_reals: int = 512
    """Unmirrored real images they are compared with (a fixed random subset); twice ``num_fakes``
    matches the real-vs-real floor, which compares two halves of them."""
    num_seeds: int = 16
    """Latents (seeds 0 .. num_seeds - 1, truncation 0.7) for drift, consistency and empty renders."""
    precision_recall_k: int = 3
    """Neighbours that set the k-NN manifold radii of precision and recall."""
    encoder: Path | None = None
    """Feature encoder file; None uses the dataset's cached one, trained on first use (about a
    minute on one CPU core for the embedded dataset)."""

    def __post_init__(self) -> None:
        for name in ("num_fakes", "num_reals", "num_seeds", "precision_recall_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"evaluation.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class SyntheticDataConfig:
    """The embedded dataset used when no ``--data`` is given."""

    num_images: int = 2000
    """Images to generate."""
    seed: int = 0
    """Seed of the generator (the dataset is cached per seed, size and resolution)."""


@dataclass
class TrainConfig:
    """``python -m wysiwyg_gan.train``: train the WYSIWYG GAN.

    The paper's Table 4 ablations are one flag each: ``--schedule.no-learned-sampler`` (two-pass
    rendering at every stage), ``--sampler.sampling robust_iid`` (no stratification),
    ``--sampler.sampling p_hat_stratified`` (no robust sampling) and
    ``--loss.no-beta-regularisation`` (no L_surface); their fields say what the paper reports."""

    preset: PresetName = "cpu"
    """Starting configuration: ``cpu`` (a small GAN on the embedded dataset, about 30 minutes on 2
    cores), ``cpu-long`` (the same GAN trained three times longer), ``ffhq512`` (the paper's FFHQ run), ``afhq512`` (fine-tuning from an FFHQ checkpoint)."""
    data: Path | None = None
    """Dataset folder or zip in EG3D's dataset.json format; None generates the embedded synthetic one."""
    out: Path = Path("runs/wysiwyg-gan")
    """Run folder: checkpoints, snapshots, metrics.jsonl, tensorboard."""
    resume: str | None = None
    """``latest`` (the newest checkpoint in ``out``) or a checkpoint path."""
    init_from: Path | None = None
    """Checkpoint whose networks start this run (fine-tuning; optimisers and image count start fresh)."""
    seed: int = 0
    """Seed of all randomness (each step and rank derives its own from it)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    batch: int = 32
    """Global batch: images per optimisation step over all processes."""
    batch_per_gpu: int | None = None
    """Images per process per forward pass; the rest of the batch is gradient accumulation.
    None is batch / world size."""
    xflip: bool = True
    """Mirror the dataset (and its cameras) to double it."""
    total_images: int | None = None
    """Stop after this many images; None runs the schedule's length."""
    checkpoint_every: int = 200_000
    """Images between checkpoints."""
    snapshot_every: int = 200_000
    """Images between snapshot grids."""
    log_every: int = 10
    """Steps between log lines."""
    keep_checkpoints: int = 3
    """Newest periodic checkpoints kept (the final one is always kept)."""
    snapshot_seeds: int = 8
    """Latents shown in the snapshot grids."""
    snapshot_views: int = 3
    """Cameras per latent in the snapshot grids (yaw around the frontal view)."""
    truncation_psi: float = 0.7
    """Truncation of the snapshot latents (paper: 0.7)."""
    progress: bool = True
    """Show a rich progress bar (off in logs and CI)."""
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    sampler: LearnedSamplerConfig = field(default_factory=LearnedSamplerConfig.paper)
    """The paper's sampler (``LearnedSamplerConfig.paper``). The library default's depth-guided probe
    skip and depth margin are measured on fixed analytic scenes, not yet in GAN training; turn them
    on with ``--sampler.cnn-probe-skip-depth-share`` and ``--sampler.depth-margin``."""
    render: RenderConfig = field(default_factory=RenderConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.batch_per_gpu is not None and self.batch_per_gpu < 1:
            raise ValueError(f"batch_per_gpu must be >= 1, got {self.batch_per_gpu}")
        if self.schedule.full_resolution % self.sampler.downscale:
            raise ValueError(
                f"the full resolution ({self.schedule.full_resolution}) must be divisible by the sampler's "
                f"downscale ({self.sampler.downscale})"
            )

    @property
    def run_length(self) -> int:
        return self.total_images if self.total_images is not None else self.schedule.total_images


def ffhq512_preset() -> TrainConfig:
    """The paper's FFHQ-512 run: batch 32 (16 GPUs x 2), 28.2M images, every schedule milestone."""
    return TrainConfig(preset="ffhq512", batch=32, out=Path("runs/ffhq512"))


def afhq512_preset() -> TrainConfig:
    """AFHQv2-Cats fine-tuning (paper SUPP A3.2): from an FFHQ checkpoint (``--init-from``) for 1.2M
    images with R1 gamma 6 and the FFHQ schedule's final values. The paper uses ADA for this; it is
    not implemented here (only x-flip augmentation), so expect more discriminator overfitting."""
    schedule = ScheduleConfig(
        total_images=1_200_000,
        low_resolution=512,
        mid_resolution=512,
        mid_resolution_start=0,
        full_resolution_start=0,
        beta_target_initial=0.001,
        beta_target_start=0,
        r1_gammas=((0, 6.0),),
        color_lr_multipliers=((0, 1.0),),
        supervise_sampler_start=0,
        render_with_sampler_start=0,
        swap_probability=0.8,
        swap_fade_images=1,
    )
    return TrainConfig(preset="afhq512", batch=32, out=Path("runs/afhq512"), schedule=schedule)


def cpu_preset() -> TrainConfig:
    """A small GAN on the embedded 64x64 synthetic dataset, through every stage of the schedule:
    two-pass at 16x16 (upsampled) -> 32x32 -> sampler supervision -> learned sampler at 32x32 ->
    learned sampler at 64x64 from a 16x16 probe (the paper's 4x ratio). At most about 30 minutes on 2 CPU
    cores, evaluation included.

    The paper's schedule shrunk to 8000 images with the same order of milestones, most of them spent
    at 16x16 where a step is cheapest; R1 gammas keep the paper's ratios scaled by StyleGAN's
    heuristic (gamma ~ resolution^2 / batch: 1/16 of the paper's 512x512, batch 32); 3
    position-encoding frequencies instead of 6, since the images are 8x smaller (the finest sine
    would alias at 16x16); larger initial feature weights, so that latents shape the objects from
    the start of this short run. The colour is diffuse (``view_dependent=False``): the data has no
    view effects, and with the paper's view-dependent MLP_c the generator coloured each view on its
    own instead of varying its objects (measured in benchmarks/RESULTS.md)."""
    schedule = ScheduleConfig(
        total_images=8_000,
        low_resolution=16,
        mid_resolution=32,
        full_resolution=64,
        mid_resolution_start=4_000,
        mid_resolution_ramp=400,
        full_resolution_start=7_200,
        full_resolution_ramp=100,
        beta_target_start=4_000,
        beta_target_ramp=400,
        r1_gammas=((0, 0.06), (7_200, 0.25), (7_800, 0.12)),
        color_lr_multipliers=((0, 2.0), (7_800, 1.0)),
        supervise_sampler_start=6_400,
        render_with_sampler_start=6_800,
        swap_fade_images=400,
    )
    return TrainConfig(
        preset="cpu",
        out=Path("runs/cpu"),
        batch=8,
        checkpoint_every=1_000,
        snapshot_every=2_000,
        log_every=10,
        snapshot_seeds=16,
        evaluation=EvaluationConfig(every=2_000),
        generator=GeneratorConfig(
            z_dim=64,
            w_dim=64,
            backbone_resolution=32,
            channel_base=1024,
            channel_max=64,
            plane_channels=16,
            plane_block_channels=16,
            sdf_hidden=64,
            geometry_features=16,
            position_frequencies=3,
            feature_init_std=3e-3,
            color_hidden=32,
            view_dependent=False,
        ),
        discriminator=DiscriminatorConfig(channel_base=1024, channel_max=64),
        sampler=LearnedSamplerConfig.paper(
            num_bins=24,
            probe_samples=48,
            downscale=4,
            cnn_width=32,
            cnn_probe_skip=True,
            adaptive_low=8,
            adaptive_high=16,
            patch_size=16,
            target_samples=48,
            target_blur_sigma=0.5,
        ),
        render=RenderConfig(coarse_samples=12, fine_samples=12),
        schedule=schedule,
        optim=OptimConfig(sampler_lr=1e-3, r1_interval=4, ema_images=500),
    )


def cpu_long_preset() -> TrainConfig:
    """The ``cpu`` preset with every milestone three times later (24000 images, about 75 minutes
    on 2 CPU cores): the images the default run cannot afford within 30 minutes."""
    config = cpu_preset()
    return dataclasses.replace(
        config,
        preset="cpu-long",
        out=Path("runs/cpu-long"),
        schedule=config.schedule.scaled(3),
        snapshot_every=4_000,
        evaluation=dataclasses.replace(config.evaluation, every=4_000),
    )


PRESETS = {"cpu": cpu_preset, "cpu-long": cpu_long_preset, "ffhq512": ffhq512_preset, "afhq512": afhq512_preset}


# ----- (de)serialisation: checkpoints and run folders keep the configuration as JSON -----


def config_to_json(config: TrainConfig) -> dict[str, Any]:
    """The configuration as JSON-compatible data (paths as strings)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _from_json(kind: Any, value: Any) -> Any:
    """``value`` (JSON data) as the annotated type ``kind`` (dataclasses, tuples, paths, unions)."""
    if value is None:
        return None
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        names = {f.name for f in dataclasses.fields(kind) if f.init}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"unknown {kind.__name__} settings {sorted(unknown)}")
        return kind(**{name: _from_json(hints[name], item) for name, item in value.items()})
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(kind) if option is not type(None)]
        return _from_json(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        arguments = typing.get_args(kind)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(_from_json(arguments[0], item) for item in value)
        return tuple(_from_json(argument, item) for argument, item in zip(arguments, value))
    if kind is Path:
        return Path(value)
    return value


REMOVED_SETTINGS = (("loss", "sampler_weight"),)
"""Settings older checkpoints may hold that no longer exist; none of them changed training."""

ADDED_SETTINGS = {
    ("sampler", "cnn_probe_skip_depth_share"): 0.0,
    ("sampler", "cnn_probe_skip_depth_sigma"): 2.0,
    ("sampler", "depth_margin"): 0,
}
"""Settings older checkpoints lack, with the value that reproduces how those checkpoints were trained."""


def config_from_json(data: dict[str, Any]) -> TrainConfig:
    """The inverse of ``config_to_json``: a checkpoint's configuration as a ``TrainConfig``."""
    data = copy.deepcopy(data)
    for group, name in REMOVED_SETTINGS:
        data.get(group, {}).pop(name, None)
    for (group, name), value in ADDED_SETTINGS.items():
        if group in data:
            data[group].setdefault(name, value)
    return _from_json(TrainConfig, data)


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two ``config_to_json`` dicts."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return differences
