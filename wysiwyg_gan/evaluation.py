"""Metrics while training, as EG3D reports FID during its runs, with nothing downloaded.

``RunEvaluator`` loads (or trains once) the dataset's feature encoder and encodes a fixed subset
of the real images when training starts; ``evaluate(trainer)`` then scores the EMA generator as it
renders at that point of the schedule (renders below the output resolution are upsampled, as the
discriminator sees them): encoder FID/KID, precision and recall with the real-vs-real floor (and
precision and recall of frontal renders, where only the latents vary, so that colour changing with
the view cannot pass for diversity), on the synthetic data how the predicted shape families split
against the reals', colour drift along an orbit, multi-view consistency, how many latents render
nothing, how much of the frame the frontal renders cover opaquely beside the reals' foreground
share (a large opaque dark surface behind the objects shows there), and how far their objects
stand in front of the frame's border (``relief``; objects painted onto a wall score about 0); and,
where the dataset has true normal maps, the distance of the generated normal maps to them
(``normal_fid``, FID-N's idea: bumpy or flat surfaces show there).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from wysiwyg_gan.config import TrainConfig
from wysiwyg_gan.consistency_metrics import multiview_consistency, orbit_colour_drift
from wysiwyg_gan.data.dataset import CameraImageDataset
from wysiwyg_gan.distribution_metrics import generator_distribution, real_features
from wysiwyg_gan.feature_encoder import load_or_train_encoder
from wysiwyg_gan.flatness_metrics import PAINTED_RELIEF, foreground_fraction, frame_relief, opaque_fraction
from wysiwyg_gan.data.normal_maps import has_true_normals
from wysiwyg_gan.inference import TrainedGAN, render_cameras, render_seeds
from wysiwyg_gan.normal_metrics import normal_distribution, real_normal_features
from wysiwyg_gan.orbit_cameras import FRONTAL, orbit_labels
from wysiwyg_gan.schedule import schedule_at
from wysiwyg_gan.training import GANTrainer

EMPTY_OPACITY = 0.5
"""A latent renders nothing when no pixel of its frontal view is more opaque than this."""


def evaluation_resolution(trainer: GANTrainer) -> int:
    """The schedule's rendering resolution, rounded down to a multiple of the sampler's downscale
    when the learned sampler renders."""
    schedule = schedule_at(trainer.images_seen, trainer.config.schedule)
    resolution = schedule.render_resolution
    if schedule.render_with_sampler:
        downscale = trainer.config.sampler.downscale
        resolution = max(downscale, resolution // downscale * downscale)
    return resolution


class RunEvaluator:
    """The metrics of ``TrainConfig.evaluation`` for one run's dataset."""

    def __init__(self, config: TrainConfig, data_path: Path, device: torch.device, log: Callable[[str], None] = print):
        self.config = config
        settings = config.evaluation
        resolution = config.schedule.full_resolution
        start = time.perf_counter()
        reals = CameraImageDataset(data_path, resolution=resolution)  # unmirrored: see metrics' distribution
        count = min(settings.num_reals, len(reals))
        if count < 2 * (settings.precision_recall_k + 1):
            raise ValueError(
                f"evaluation needs at least {2 * (settings.precision_recall_k + 1)} real images (two halves for the "
                f"real-vs-real floor, each larger than precision_recall_k={settings.precision_recall_k}); the dataset "
                f"has {len(reals)} and num_reals is {settings.num_reals}: lower --evaluation.precision-recall-k or turn "
                "evaluation off with --evaluation.every -1"
            )
        self.encoder = load_or_train_encoder(data_path, resolution, settings.encoder, device=device, log=log)
        self.real_features = real_features(self.encoder, reals, count, config.seed)
        self.render_labels = render_cameras(reals, settings.num_fakes, config.seed)
        self.real_foreground = foreground_fraction(torch.stack([reals[index][0] for index in range(count)]))
        self.real_normal_features = None
        if has_true_normals(data_path):
            self.real_normal_features = real_normal_features(self.encoder, data_path, len(reals), count, config.seed, resolution)
        self.setup_seconds = time.perf_counter() - start

    @torch.no_grad()
    def evaluate(self, trainer: GANTrainer) -> dict[str, float]:
        """The EMA generator's metrics now, as ``eval/<name>`` scalars."""
        settings = self.config.evaluation
        device = trainer.device
        gan = TrainedGAN(self.config, trainer.generator_ema, trainer.sampler, trainer.images_seen, device, Path(self.config.out))
        resolution = evaluation_resolution(trainer)
        start = time.perf_counter()
        was_training = trainer.sampler.training
        trainer.sampler.eval()
        try:
            seeds = list(range(settings.num_fakes))
            frontal = orbit_labels(FRONTAL, FRONTAL, len(seeds), device)
            report = generator_distribution(
                gan,
                self.encoder,
                self.real_features,
                seeds,
                self.render_labels,
                frontal,
                k=settings.precision_recall_k,
                seed=self.config.seed,
                resolution=resolution,
            )
            few = list(range(settings.num_seeds))
            drift = orbit_colour_drift(gan, few, resolution=resolution)
            consistency = multiview_consistency(gan, few, resolution=resolution)
            frontal_few = orbit_labels(FRONTAL, FRONTAL, len(few), device)
            frontal_images = render_seeds(gan, few, frontal_few, frontal_few, truncation_psi=0.7, resolution=resolution)
            opacity = frontal_images.opacity
            empty = int((opacity.flatten(1).amax(dim=1) <= EMPTY_OPACITY).sum())
            opaque = opaque_fraction(opacity, EMPTY_OPACITY)
            relief = frame_relief(frontal_images.depth, opacity, self.config.render.far)
            relief = relief[relief.isfinite()]
            normals = {}
            if self.real_normal_features is not None:
                normal_report = normal_distribution(
                    gan, self.encoder, self.real_normal_features, seeds, self.render_labels, frontal,
                    k=settings.precision_recall_k, seed=self.config.seed, resolution=resolution,
                )
                normals = {
                    "normal_fid": normal_report["fid"],
                    "normal_recall": normal_report["recall"],
                    "floor_normal_fid": normal_report["real_floor"]["fid"],
                }
        finally:
            trainer.sampler.train(was_training)
        floor = report["real_floor"]
        families = {}
        if "families" in report:
            families = {
                "family_total_variation": report["families"]["total_variation"],
                "frontal_family_total_variation": report["frontal_view"]["families"]["total_variation"],
                "families_covered": float(report["families"]["covered"]),
                "floor_family_total_variation": report["families"]["real_floor"]["total_variation"],
            }
        values = {
            "fid": report["fid"],
            "kid": report["kid"],
            "precision": report["precision"],
            "recall": report["recall"],
            "frontal_precision": report["frontal_view"]["precision"],
            "frontal_recall": report["frontal_view"]["recall"],
            "floor_fid": floor["fid"],
            "floor_precision": floor["precision"],
            "floor_recall": floor["recall"],
            **families,
            "colour_drift": drift["drift"],
            "consistency_error": consistency["error"],
            "empty_seeds": float(empty),
            **normals,
            "opaque_fraction": opaque,
            "relief": float(relief.median()) if relief.numel() else float("nan"),
            "painted_share": float((relief < PAINTED_RELIEF).float().mean()) if relief.numel() else float("nan"),
            "real_foreground_fraction": self.real_foreground,
            "resolution": float(resolution),
            "samples_per_ray": report["samples_per_ray"],
            "seconds": time.perf_counter() - start,
        }
        return {f"eval/{name}": value for name, value in values.items()}
