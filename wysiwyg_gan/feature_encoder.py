"""A small CNN image encoder trained on the real dataset itself: the offline feature space of
``wysiwyg_gan.distribution_metrics`` (encoder FID, KID, precision and recall without Inception).

Two ways to train it, on the real images only:

* ``supervised``, when the dataset has the synthetic generator's ground truth (``geometry.json``
  beside ``dataset.json``): classify each image's shape family and regress its albedo, size,
  proportions, orientation (the shape's second-moment tensor in the camera frame, blind to the
  shape's own symmetries) and position in the camera frame. The features are the penultimate
  layer, so the attributes that tell objects apart are what they measure.
* ``contrastive`` for any other dataset: SimCLR's NT-Xent objective between two augmentations of
  each image (small zooms and shifts, mirroring, slight brightness, contrast and saturation
  jitter; never a hue change, so colour stays in the features).

Training is deterministic for a seed on the CPU and takes about a minute of one CPU thread at the
default size. ``load_or_train_encoder`` caches the result in ``cache_folder()/encoders`` under a
key of the dataset (its ``dataset.json``, and ``geometry.json`` when supervised), the resolution,
the mode, the configuration and ``ENCODER_VERSION``, so numbers stay comparable between runs. Files
hold plain tensors and JSON-compatible metadata (``torch.load(weights_only=True)``), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int, UInt8
from torch import Tensor, nn
from torch.utils.data import Dataset

from learned_sampler.validation import check_finite, check_positive_int
from wysiwyg_gan.data.dataset import DATASET_JSON, CameraImageDataset, DatasetError, _Source, split_camera_labels
from wysiwyg_gan.data.shapes import COMPOUND, FAMILIES, ShapeSpec
from wysiwyg_gan.data.synthetic import GEOMETRY_JSON, cache_folder, load_shape_specs

ENCODER_VERSION = 1
"""Version of the architecture and training; part of the cache key, bump it whenever features change."""
EncoderMode = Literal["auto", "supervised", "contrastive"]
REGRESSION_TARGETS = (
    *(f"albedo_{c}" for c in "rgb"),
    "size",
    *(f"proportion_{i}" for i in range(3)),
    *(f"moment_{a}" for a in ("xx", "xy", "xz", "yy", "yz", "zz")),
    *(f"position_{c}" for c in "xyz"),
)
"""What the supervised encoder regresses (standardised over the dataset), besides the family."""


class EncoderError(ValueError):
    """A feature encoder file is missing, unreadable or not an encoder."""


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture and training of a ``FeatureEncoder``; every field is part of the cache key."""

    input_resolution: int = 64
    """Images are resized (antialiased bilinear) to this square size before encoding; a power of 2, >= 8."""
    width: int = 16
    """Channels after the first stride-2 convolution; doubled at every further one, up to ``max_width``."""
    max_width: int = 128
    """Most channels of a convolution."""
    feature_dim: int = 96
    """Dimensions of the features (the penultimate layer)."""
    steps: int = 600
    """Optimiser steps (about 1 minute of one CPU thread at the default size)."""
    batch: int = 64
    """Images per step (contrastive: two views of each of ``batch // 2`` images, so both modes cost the same)."""
    learning_rate: float = 2e-3
    """Adam's learning rate, decayed to 0 along a cosine."""
    temperature: float = 0.2
    """Contrastive: temperature of the NT-Xent loss."""
    projection_dim: int = 64
    """Contrastive: output of the projection head the loss sees (SimCLR's g)."""
    max_shift: float = 0.05
    """Contrastive: largest shift of an augmentation, as a fraction of the image side (kept below
    the synthetic objects' spread of positions, which the features should still see)."""
    min_scale: float = 0.9
    """Contrastive: smallest zoom of an augmentation (the crop's side over the image's; kept
    within the objects' spread of sizes)."""
    jitter: float = 0.1
    """Contrastive: largest relative change of brightness, contrast and saturation (no hue change)."""
    grey_pairs: float = 0.5
    """Contrastive: probability that both views of an image are made grey. Colour alone tells most
    images apart, so without this the features would barely see shape; grey pairs need shape, and
    as the two views of a pair never differ in colour, nothing teaches the features to ignore it."""
    max_images: int = 20_000
    """Training images at most (a seeded random subset of larger datasets)."""
    seed: int = 0
    """Seed of the initial weights, the batches and the augmentations."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.type == "int" and item.name != "seed":
                check_positive_int(item.name, value)
        levels = math.log2(self.input_resolution / 4)
        if levels < 1 or not levels.is_integer():
            raise ValueError(f"input_resolution must be a power of 2 >= 8, got {self.input_resolution}")
        for name in ("learning_rate", "temperature", "min_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not (0 <= self.max_shift < 0.5 and self.min_scale <= 1 and 0 <= self.jitter < 1 and 0 <= self.grey_pairs <= 1):
            raise ValueError("need 0 <= max_shift < 0.5, min_scale <= 1, 0 <= jitter < 1 and 0 <= grey_pairs <= 1")


class FeatureEncoder(nn.Module):
    """Images ``(B, 3, R, R)`` in [-1, 1] to feature vectors ``(B, feature_dim)``.

    Stride-2 3x3 convolutions down to a 4x4 map (at 8x8 and 4x4 each followed by a 3x3
    convolution, where that is cheap), flattened (so where things are in the image counts, not
    only what), then one linear layer with LeakyReLU: the features. The training heads sit on top
    and are kept so that a saved encoder reloads exactly; ``features`` does not use them. No
    normalisation or dropout layers: train and eval modes compute the same thing.
    """

    def __init__(self, config: EncoderConfig, mode: Literal["supervised", "contrastive"], metadata: dict | None = None):
        super().__init__()
        if mode not in ("supervised", "contrastive"):
            raise ValueError(f"mode must be supervised or contrastive, got {mode!r}")
        self.config = config
        self.mode = mode
        self.metadata: dict = dict(metadata or {})  # dataset, key, training time and loss, path
        layers: list[nn.Module] = []
        channels, resolution = 3, config.input_resolution
        level = 0
        while resolution > 4:
            width = min(config.width * 2**level, config.max_width)
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            if resolution <= 16:  # output 8x8 or 4x4: cheap; at larger sizes it would dominate the cost
                layers += [nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2)]
            channels, resolution, level = width, resolution // 2, level + 1
        self.backbone = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 16, config.feature_dim), nn.LeakyReLU(0.2))
        # Set after training so that the training reals' features have mean 0 and a mean variance
        # of 1 per dimension: one scale for all, which keeps the geometry (k-NN) and gives KID's
        # polynomial kernel inputs of order 1, whatever the raw activations' scale.
        self.register_buffer("feature_mean", torch.zeros(config.feature_dim))
        self.register_buffer("feature_scale", torch.ones(()))
        if mode == "supervised":
            self.family_head = nn.Linear(config.feature_dim, len(FAMILIES))
            self.regression_head = nn.Linear(config.feature_dim, len(REGRESSION_TARGETS))
        else:
            self.projection_head = nn.Sequential(
                nn.Linear(config.feature_dim, config.feature_dim),
                nn.LeakyReLU(0.2),
                nn.Linear(config.feature_dim, config.projection_dim),
            )

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prepare(self, images: Tensor) -> Float[Tensor, "batch 3 res res"]:
        """Float images in [-1, 1] at the input resolution, on the encoder's device (uint8 are converted)."""
        images = images.to(self.device)
        images = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
        size = self.config.input_resolution
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return images

    def forward(self, images: Float[Tensor, "batch 3 res res"]) -> Float[Tensor, "batch feature_dim"]:
        """Raw features (the penultimate layer, not normalised) of prepared images (``prepare``), with gradients."""
        return self.backbone(images)

    def normalise(self, raw: Float[Tensor, "batch feature_dim"]) -> Float[Tensor, "batch feature_dim"]:
        """Raw features centred and scaled as ``features`` returns them."""
        return (raw - self.feature_mean) / self.feature_scale

    @torch.no_grad()
    def features(
        self,
        images: Float[Tensor, "num 3 height width"] | UInt8[Tensor, "num 3 height width"],
        batch_size: int = 256,
    ) -> Float[Tensor, "num feature_dim"]:
        """Feature vectors of images (floats in [-1, 1], or uint8), ``batch_size`` at a time, no gradients.

        The penultimate layer, centred and scaled by one number fixed at training (``normalise``):
        over the training images each dimension has mean 0 and the variances average 1. Any size
        (resized to ``input_resolution``) and any device: each batch is moved to the encoder's
        device and the features come back on the images' device, float32.
        """
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3 or len(images) == 0:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a (N, 3, H, W) tensor with N >= 1, got {shape}")
        if images.dtype != torch.uint8:
            if not images.is_floating_point():
                raise ValueError(f"images must be floating point in [-1, 1] or uint8, got {images.dtype}")
            check_finite("images", images)
        check_positive_int("batch_size", batch_size)
        rows = [
            self.normalise(self(self.prepare(images[start : start + batch_size]))).to(images.device)
            for start in range(0, len(images), batch_size)
        ]
        return torch.cat(rows)

    @torch.no_grad()
    def predict_families(self, features: Float[Tensor, "num feature_dim"]) -> Int[Tensor, "num"]:
        """The shape family (an index into ``wysiwyg_gan.data.shapes.FAMILIES``) that the
        supervised head predicts from feature rows as ``features`` returns them."""
        if self.mode != "supervised":
            raise EncoderError(
                "only a supervised encoder (trained on the synthetic dataset's ground truth) predicts shape "
                f"families; this one is {self.mode}"
            )
        if not isinstance(features, Tensor) or features.dim() != 2 or features.shape[1] != self.feature_dim:
            shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise ValueError(f"features must have shape (N, {self.feature_dim}), got {shape}")
        raw = features.to(self.device, torch.float32) * self.feature_scale + self.feature_mean
        return self.family_head(raw).argmax(dim=-1).to(features.device)

    def dataset_features(
        self, dataset: Dataset, indices: Sequence[int] | None = None, batch_size: int = 256
    ) -> Float[Tensor, "num feature_dim"]:
        """``features`` of a dataset's items (``CameraImageDataset``'s ``(image, label)`` or bare
        images), ``indices`` (default: all) in order, loaded ``batch_size`` at a time (CPU result)."""
        indices = list(range(len(dataset))) if indices is None else list(indices)
        if not indices:
            raise ValueError("indices must select at least one item")
        check_positive_int("batch_size", batch_size)
        rows = []
        for start in range(0, len(indices), batch_size):
            items = [dataset[index] for index in indices[start : start + batch_size]]
            rows.append(self.features(torch.stack([item[0] if isinstance(item, tuple) else item for item in items]), batch_size))
        return torch.cat(rows)


# ----- supervised targets from the synthetic ground truth -----


def _albedo(spec: ShapeSpec) -> np.ndarray:
    """Mean diffuse colour: a compound's tint times the mean of its parts' albedos."""
    colour = np.asarray(spec.colour)
    if spec.family == COMPOUND:
        colour = colour * np.mean([_albedo(part) for part in spec.parts], axis=0)
    return colour


def _moment(spec: ShapeSpec) -> np.ndarray:
    """Second-moment tensor (3x3) of the shape about its origin, in its parent's frame.

    ``R diag(extent^2) R^T`` for a primitive, whose symmetries leave it unchanged (a sphere's is
    isotropic, a cylinder's has its axis as an eigenvector); a compound's is the mean of its parts'
    moments about its own origin. It describes orientation without the ambiguity of the rotation.
    """
    rotation = np.asarray(spec.rotation)
    if spec.family == COMPOUND:
        local = np.mean([np.outer(part.translation, part.translation) + _moment(part) for part in spec.parts], axis=0)
    else:
        local = np.diag(np.square(spec.extent()))
    return rotation @ local @ rotation.T


def supervised_targets(
    specs: list[ShapeSpec], labels: Float[Tensor, "num 25"]
) -> tuple[torch.Tensor, Float[Tensor, "num targets"]]:
    """Family index ``(N,)`` and the ``REGRESSION_TARGETS`` ``(N, 16)`` of each image's object, seen by its camera.

    Orientation and position are in the camera frame (what the image shows): the moment tensor
    ``C^T M C`` (upper triangle) and ``C^T (translation - eye)``, with ``C`` the cam2world rotation.
    Proportions are the local half-sides over the size (the bounding radius), sorted.
    """
    cam2world, _ = split_camera_labels(labels.double())
    families, rows = [], []
    for spec, pose in zip(specs, cam2world.numpy()):
        rotation, eye = pose[:3, :3], pose[:3, 3]
        moment = rotation.T @ _moment(spec) @ rotation
        size = spec.bound()
        proportions = sorted(np.asarray(spec.extent()) / size, reverse=True)
        position = rotation.T @ (np.asarray(spec.translation) - eye)
        rows.append([*_albedo(spec), size, *proportions, *moment[np.triu_indices(3)], *position])
        families.append(FAMILIES.index(spec.family))
    return torch.tensor(families), torch.tensor(np.asarray(rows), dtype=torch.float32)


# ----- training -----


def _load_images(dataset: CameraImageDataset, config: EncoderConfig) -> tuple[Tensor, Tensor]:
    """The training images (float16, at the input resolution) and their item indices."""
    generator = torch.Generator().manual_seed(config.seed)
    indices = torch.arange(len(dataset))
    if len(dataset) > config.max_images:
        indices = torch.randperm(len(dataset), generator=generator)[: config.max_images].sort().values
    size = config.input_resolution
    images = torch.empty(len(indices), 3, size, size, dtype=torch.float16)
    for row, index in enumerate(indices.tolist()):
        image = dataset[index][0][None]
        if image.shape[-1] != size:
            image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        images[row] = image[0].half()
    return images, indices


def augment(
    images: Float[Tensor, "batch 3 res res"], config: EncoderConfig, generator: torch.Generator
) -> Float[Tensor, "batch 3 res res"]:
    """A random view of each image: zoom, shift, mirror (one resampling), then brightness, contrast
    and saturation jitter in [0, 1] colour; hue is never changed. Edges are extended (``border``)."""
    batch = len(images)

    def uniform(low: float, high: float, shape: tuple[int, ...] = (batch,)) -> Tensor:
        return (low + (high - low) * torch.rand(shape, generator=generator)).to(images.device)

    scale = uniform(config.min_scale, 1.0)
    mirror = torch.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
    shift = uniform(-2 * config.max_shift, 2 * config.max_shift, (batch, 2))  # [-1, 1] coordinates span 2
    theta = torch.zeros(batch, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = scale * mirror, scale, shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    views = (F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False) + 1) / 2
    brightness, contrast, saturation = (uniform(1 - config.jitter, 1 + config.jitter)[:, None, None, None] for _ in range(3))
    views = views * brightness
    views = views.mean(dim=(1, 2, 3), keepdim=True) + contrast * (views - views.mean(dim=(1, 2, 3), keepdim=True))
    grey = views.mean(dim=1, keepdim=True)
    views = grey + saturation * (views - grey)
    return views.clamp(0, 1) * 2 - 1


def _contrastive_loss(encoder: FeatureEncoder, images: Tensor, config: EncoderConfig, generator: torch.Generator) -> Tensor:
    """NT-Xent: each view must pick the other view of its image among the ``2B - 1`` other views."""
    grey = torch.rand(len(images), generator=generator).to(images.device) < config.grey_pairs
    images = torch.where(grey[:, None, None, None], images.mean(dim=1, keepdim=True).expand_as(images), images)
    views = torch.cat([augment(images, config, generator), augment(images, config, generator)])
    z = F.normalize(encoder.projection_head(encoder(views)), dim=1)
    logits = z @ z.T / config.temperature
    logits = logits.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), -math.inf)
    batch = len(images)
    partner = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    return F.cross_entropy(logits, partner)


def _supervised_loss(encoder: FeatureEncoder, images: Tensor, families: Tensor, targets: Tensor) -> Tensor:
    features = encoder(images)
    return F.cross_entropy(encoder.family_head(features), families) + F.mse_loss(encoder.regression_head(features), targets)


def resolve_mode(dataset_path: str | os.PathLike, mode: EncoderMode = "auto") -> Literal["supervised", "contrastive"]:
    """``auto``: supervised when the dataset has the synthetic ground truth (``geometry.json``), else contrastive."""
    if mode not in ("auto", "supervised", "contrastive"):
        raise ValueError(f"mode must be auto, supervised or contrastive, got {mode!r}")
    if mode != "auto":
        return mode
    return "supervised" if _Source(Path(dataset_path)).exists(GEOMETRY_JSON) else "contrastive"


def train_encoder(
    dataset_path: str | os.PathLike,
    resolution: int,
    mode: EncoderMode = "auto",
    config: EncoderConfig | None = None,
    device: torch.device | str = "cpu",
) -> FeatureEncoder:
    """Train an encoder on the images of a dataset, loaded at ``resolution`` (the GAN's: the reals go
    through the resizing the fakes' reals go through), then resized to ``config.input_resolution``.

    Deterministic for ``config.seed`` on the CPU. Raises ``DatasetError`` for an unusable dataset
    (supervised: one without ground truth for every image).
    """
    config = config or EncoderConfig()
    mode = resolve_mode(dataset_path, mode)
    device = torch.device(device)
    start = time.perf_counter()
    dataset = CameraImageDataset(dataset_path, resolution=resolution)
    images, indices = _load_images(dataset, config)
    if mode == "supervised":
        specs = load_shape_specs(dataset_path)
        names = [dataset.names[index] for index in indices.tolist()]
        missing = [name for name in names if name not in specs]
        if missing:
            raise DatasetError(
                f"{dataset_path}: {GEOMETRY_JSON} has no ground truth for {len(missing)} images, e.g. {missing[0]}"
            )
        families, targets = supervised_targets([specs[name] for name in names], dataset.labels[indices])
        target_mean, target_std = targets.mean(0), targets.std(0).clamp_min(1e-6)
        targets = ((targets - target_mean) / target_std).to(device)
        families = families.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        encoder = FeatureEncoder(config, mode).to(device)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    images = images.to(device)
    encoder.train()
    losses: list[float] = []
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        count = config.batch if mode == "supervised" else max(2, config.batch // 2)
        rows = torch.randint(len(images), (count,), generator=generator).to(device)
        batch = images[rows].float()
        if mode == "supervised":
            loss = _supervised_loss(encoder, batch, families[rows], targets[rows])
        else:
            loss = _contrastive_loss(encoder, batch, config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    encoder.eval().requires_grad_(False)
    with torch.no_grad():
        raw = torch.cat([encoder(images[start : start + 256].float()) for start in range(0, len(images), 256)])
        encoder.feature_mean.copy_(raw.mean(0))
        encoder.feature_scale.copy_(raw.var(0).mean().sqrt().clamp_min(1e-12))
    encoder.metadata = {
        "mode": mode,
        "dataset": str(dataset_path),
        "dataset_key": dataset_key(dataset_path, resolution, mode, config),
        "resolution": resolution,
        "num_images": len(images),
        "train_seconds": time.perf_counter() - start,
        "final_loss": float(np.mean(losses[-max(1, config.steps // 20) :])),
        "train_device": str(device),
    }
    if mode == "supervised":
        encoder.metadata |= {
            "families": list(FAMILIES),
            "regression_targets": list(REGRESSION_TARGETS),
            "target_mean": target_mean.tolist(),
            "target_std": target_std.tolist(),
        }
    return encoder


# ----- files and the cache -----


def dataset_key(
    dataset_path: str | os.PathLike, resolution: int, mode: Literal["supervised", "contrastive"], config: EncoderConfig
) -> str:
    """SHA-256 of what decides an encoder: ``dataset.json`` (and ``geometry.json`` when supervised),
    the resolution, the mode, the configuration and ``ENCODER_VERSION``."""
    source = _Source(Path(dataset_path))
    digest = hashlib.sha256()
    names = (DATASET_JSON, GEOMETRY_JSON) if mode == "supervised" else (DATASET_JSON,)
    for name in names:
        if not source.exists(name):
            raise DatasetError(f"{source.describe(name)}: missing")
        digest.update(hashlib.sha256(source.read(name)).digest())
    digest.update(json.dumps([ENCODER_VERSION, resolution, mode, asdict(config)], sort_keys=True).encode())
    return digest.hexdigest()


def default_encoder_path(
    dataset_path: str | os.PathLike, resolution: int, mode: EncoderMode = "auto", config: EncoderConfig | None = None
) -> Path:
    """The cached encoder of a dataset: ``cache_folder()/encoders/encoder-v<version>-<mode>-<resolution>-<key>.pt``."""
    config = config or EncoderConfig()
    mode = resolve_mode(dataset_path, mode)
    key = dataset_key(dataset_path, resolution, mode, config)[:16]
    return cache_folder() / "encoders" / f"encoder-v{ENCODER_VERSION}-{mode}-{resolution}-{key}.pt"


def save_encoder(encoder: FeatureEncoder, path: str | os.PathLike) -> Path:
    """Write an encoder atomically: its state dict, configuration and metadata (plain data only)."""
    from wysiwyg_gan.checkpoint import save_checkpoint

    state = {
        "kind": "wysiwyg_gan.feature_encoder",
        "encoder_version": ENCODER_VERSION,
        "mode": encoder.mode,
        "config": asdict(encoder.config),
        "metadata": {key: value for key, value in encoder.metadata.items() if key != "path"},
        "state_dict": {name: tensor.detach().cpu() for name, tensor in encoder.state_dict().items()},
    }
    path = save_checkpoint(state, Path(path))
    encoder.metadata["path"] = str(path)
    return path


def load_encoder(path: str | os.PathLike, device: torch.device | str = "cpu") -> FeatureEncoder:
    """An encoder written by ``save_encoder``, in eval mode on ``device``; ``EncoderError`` for bad files."""
    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"feature encoder {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises several types for truncated or foreign files
        raise EncoderError(f"feature encoder {path} is unreadable or corrupt: {error}") from error
    if not isinstance(state, dict) or state.get("kind") != "wysiwyg_gan.feature_encoder":
        raise EncoderError(f"{path} is not a wysiwyg_gan feature encoder")
    if state["encoder_version"] != ENCODER_VERSION:
        raise EncoderError(
            f"{path}: encoder version {state['encoder_version']}, this code reads {ENCODER_VERSION}; delete it to retrain"
        )
    try:
        encoder = FeatureEncoder(EncoderConfig(**state["config"]), state["mode"], state["metadata"])
        encoder.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise EncoderError(f"{path}: malformed feature encoder ({error})") from error
    encoder.metadata["path"] = str(path)
    return encoder.to(device).eval().requires_grad_(False)


def load_or_train_encoder(
    dataset_path: str | os.PathLike,
    resolution: int,
    path: str | os.PathLike | None = None,
    mode: EncoderMode = "auto",
    config: EncoderConfig | None = None,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> FeatureEncoder:
    """The encoder at ``path`` (default: ``default_encoder_path``), trained and saved there first if missing.

    An existing file is used as it is, with its own configuration; when it was trained on another
    dataset or resolution, or in another mode than an explicit ``mode``, a warning says so (its
    features are still a valid, but different, feature space). ``log`` receives a line before a
    training starts.
    """
    config = config or EncoderConfig()
    resolved = resolve_mode(dataset_path, mode)
    target = Path(path) if path is not None else default_encoder_path(dataset_path, resolution, resolved, config)
    if target.is_file():
        encoder = load_encoder(target, device)
        try:
            same_data = encoder.metadata.get("dataset_key") == dataset_key(dataset_path, resolution, encoder.mode, encoder.config)
        except DatasetError:  # e.g. a supervised encoder for a dataset without ground truth
            same_data = False
        if not same_data or mode not in ("auto", encoder.mode):
            warnings.warn(
                f"feature encoder {target} was trained on {encoder.metadata.get('dataset')} "
                f"({encoder.mode}, resolution {encoder.metadata.get('resolution')}), not on {dataset_path} "
                f"({resolved}, resolution {resolution})",
                stacklevel=2,
            )
        return encoder
    if log is not None:
        log(f"training the {resolved} feature encoder on {dataset_path} (once; saved to {target})")
    encoder = train_encoder(dataset_path, resolution, resolved, config, device)
    save_encoder(encoder, target)
    return encoder
