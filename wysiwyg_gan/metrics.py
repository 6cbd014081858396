"""``python -m wysiwyg_gan.metrics``: image and geometry metrics of a trained generator.

Metrics (``--metrics``, any subset):

* ``fid``, ``kid``: Frechet and kernel Inception distances through torch-fidelity (EG3D's protocol:
  ``--num-fakes`` generated images against every image of the real set, x-flipped copies included
  when the run trained with x-flip; render cameras drawn uniformly from the real set's labels;
  truncation ``--truncation-psi`` 1.0). The Inception weights are torch-fidelity's
  ``pt_inception-2015-12-05``, downloaded into torch's hub cache on first use or read from
  ``--inception-weights PATH`` (offline).
* ``consistency``: multi-view photometric consistency. Each latent is rendered from the frontal
  camera and from one yawed by ``--yaw-offset``; the yawed view's pixels are lifted to 3D by their
  depth, projected into the frontal view, and compared with the frontal image there
  (``consistency_metrics.warp_by_depth``). Mean absolute error in [0, 1] colour units over pixels
  that are foreground in both views and not occluded; 0 for a perfectly consistent 3D scene.
* ``nfs``: non-flatness score (Skorokhodov et al. 2023) of frontal depth maps
  (``flatness_metrics.non_flatness_score``).
* ``relief``: how far the nearest surface in the middle of each frontal view stands in front of
  the frame's border (``flatness_metrics.frame_relief``), median over latents, and the share of
  latents that stand out less than 0.1: on data with an opaque background, objects painted onto
  the wall that shows it score about 0.
* ``geometry``: chamfer distance and normal consistency of reconstructed meshes against the
  ground-truth shapes of a synthetic dataset (``--reconstructions DIR`` written by
  ``python -m wysiwyg_gan.invert``; see ``geometry_metrics.reconstruction_accuracy``).
* ``distribution``: FID, KID, precision and recall (``wysiwyg_gan.distribution_metrics``) in the
  feature space of a small encoder trained on the real set itself (``wysiwyg_gan.feature_encoder``;
  no download), ``--distribution-fakes`` images rendered as for FID against the real set (without
  mirrored copies), plus the same numbers between two halves of the real set (``real_floor``: what
  a perfect generator scores at that sample size). The encoder is trained once per dataset and
  cached (``--encoder PATH`` names the file instead). Low recall is mode collapse. On the
  synthetic data the encoder also classifies shape families: ``families`` compares their shares
  among fakes and reals (total variation, families covered).
* ``normals``: FID-N's idea offline (``wysiwyg_gan.normal_metrics``): FID, KID, precision and
  recall of generated normal maps (camera axes, times the opacity) against the real set's true
  normal maps in the same encoder's feature space, rendered and conditioned as ``distribution``,
  with the real-vs-real floor. The real set needs true normal maps: a ``normals/`` folder with one
  PNG per image under its own name (camera-space ``(n + 1) / 2``, black background), or the
  synthetic data's geometry; without them the metric is skipped with the reason in the JSON.
* ``drift``: colour drift along an orbit (``consistency_metrics.orbit_colour_drift``): the change
  of an object's mean foreground colour over ``--drift-views`` views within
  +-``--drift-yaw-range`` of the frontal one; on a synthetic real set the true objects' drift is
  reported beside it (``dataset_drift``).

Latents are conditioned on the frontal camera, as the paper does at inference. Consistency, NFS,
relief and drift use ``--geometry-truncation-psi`` (0.7, the truncation of the paper's figures: they
measure the 3D structure of the samples one looks at), FID, KID and distribution
``--truncation-psi`` (1.0: the whole distribution, as EG3D reports FID). The default metrics need
no download. Every number goes to ``--out`` (JSON) with the protocol that produced it (seeds,
truncation, cameras, real set, renderer, samples per ray, encoder).

Models render as the run rendered at the end of its schedule unless ``--renderer.*`` says otherwise
(``wysiwyg_gan.inference.RenderOverride``, the same options as ``python -m wysiwyg_gan.generate``):
``--renderer.mode`` ``checkpoint`` (default), ``learned`` or ``two-pass``; the learned sampler's
``--renderer.budget N`` or ``adaptive`` with ``--renderer.adaptive-low``/``-high``/``-fraction``;
two-pass ``--renderer.coarse-samples``/``--renderer.fine-samples``. One run per budget draws the
paper's Table 3 (quality against samples per ray, learned sampler against two-pass).
``protocol.renderer`` records the renderer in effect: ``mode`` (``learned sampler`` or ``two-pass``),
``source`` (``checkpoint`` or ``override``), ``budget`` (and ``adaptive_low``/``adaptive_high``/
``adaptive_fraction``) and ``probe_samples_per_ray``, or ``coarse_samples``/``fine_samples``,
``expected_samples_per_ray``, and ``samples_per_ray``: the mean field samples per ray actually taken
over every image the metrics rendered (probe excluded). Examples::

    python -m wysiwyg_gan.metrics --checkpoint runs/cpu/checkpoint-000003200.pt
    python -m wysiwyg_gan.metrics --checkpoint runs/cpu --metrics distribution --encoder encoder.pt
    python -m wysiwyg_gan.metrics --checkpoint ckpt.pt --metrics fid kid --inception-weights pt_inception.pth
    python -m wysiwyg_gan.metrics --metrics geometry --reconstructions runs/invert
    python -m wysiwyg_gan.metrics --checkpoint runs/cpu --renderer.mode two-pass --renderer.coarse-samples 10 --renderer.fine-samples 10
    python -m wysiwyg_gan.metrics --checkpoint runs/cpu --renderer.mode learned --renderer.budget 20 --out metrics-learned-20.json
    python -m wysiwyg_gan.metrics --checkpoint runs/cpu --renderer.adaptive-low 16 --renderer.adaptive-high 32 --renderer.adaptive-fraction 0.1
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from torch import Tensor

from wysiwyg_gan.consistency_metrics import multiview_consistency, orbit_colour_drift, shape_colour_drift
from wysiwyg_gan.distribution_metrics import generator_distribution, real_features
from wysiwyg_gan.flatness_metrics import model_frame_relief, model_non_flatness
from wysiwyg_gan.geometry_metrics import ReconstructionError, reconstruction_accuracy
from wysiwyg_gan.inception_metrics import InceptionWeightsError, fid_kid, generated_images, inception_weights_path
from wysiwyg_gan.inference import RenderOverride, TrainedGAN, render_cameras
from wysiwyg_gan.orbit_cameras import FRONTAL, orbit_labels

if TYPE_CHECKING:
    from wysiwyg_gan.data.dataset import CameraImageDataset
    from wysiwyg_gan.feature_encoder import FeatureEncoder

MetricName = Literal["fid", "kid", "distribution", "normals", "consistency", "drift", "nfs", "relief", "geometry"]


@dataclass
class MetricsArgs:
    """``python -m wysiwyg_gan.metrics``: FID/KID, encoder distribution metrics, multi-view
    consistency, colour drift, non-flatness and geometry accuracy."""

    checkpoint: Path | None = None
    """Checkpoint written by ``wysiwyg_gan.train``, or a run folder (its newest checkpoint); needed by
    every metric but ``geometry``."""
    metrics: tuple[MetricName, ...] = ("distribution", "normals", "consistency", "drift", "nfs", "relief")
    """Metrics to compute (the default ones need no download; ``fid`` and ``kid`` need Inception's weights)."""
    data: Path | None = None
    """Real images (FID/KID; their cameras are the render cameras) and the ground truth of
    ``geometry``; default: the checkpoint's dataset, or its embedded synthetic one."""
    reconstructions: Path | None = None
    """Folder written by ``python -m wysiwyg_gan.invert`` (``invert.json`` + meshes), for ``geometry``."""
    num_fakes: int = 50_000
    """Generated images for FID/KID (EG3D's FID50k); seeds ``seed .. seed + num_fakes - 1``."""
    distribution_fakes: int = 1000
    """Generated images for ``distribution``; seeds ``seed .. seed + distribution_fakes - 1``. Half
    the real set's size matches the real-vs-real floor's sample sizes."""
    distribution_reals: int = 10_000
    """Real images for ``distribution`` at most (a seeded random subset of larger sets)."""
    encoder: Path | None = None
    """Feature encoder file for ``distribution`` (trained on the real set and saved there when
    missing); default: the cached encoder of the real set."""
    encoder_mode: Literal["auto", "supervised", "contrastive"] = "auto"
    """How a missing encoder is trained: ``supervised`` on a synthetic set's ground truth,
    ``contrastive`` on the images alone; ``auto`` picks supervised when ``geometry.json`` is there."""
    precision_recall_k: int = 3
    """Neighbours whose distance sets the radius of a sample's ball in precision/recall."""
    num_seeds: int = 64
    """Latents for consistency, drift and NFS; seeds ``seed .. seed + num_seeds - 1``."""
    seed: int = 0
    """First seed; also the seed of the FID render cameras and of KID's subsets."""
    truncation_psi: float = 1.0
    """Truncation of the FID/KID latents (1.0: none, as EG3D reports FID)."""
    geometry_truncation_psi: float = 0.7
    """Truncation of the consistency, drift and NFS latents (0.7, as the paper's figures)."""
    mirror: bool | None = None
    """Add x-flipped real images (and cameras) to the real set; default: as the run trained."""
    fid_condition: Literal["frontal", "camera"] = "frontal"
    """FID latents conditioned on the frontal camera (the paper at inference) or on their render
    camera (EG3D's metrics)."""
    kid_subset_size: int = 1000
    """KID subset size, Inception and encoder alike (lowered to the number of images when needed)."""
    kid_subsets: int = 100
    """KID subsets, Inception and encoder alike."""
    inception_weights: Path | None = None
    """Local Inception weights file for FID/KID (offline); default: download into torch's hub cache."""
    yaw_offset: float = 0.35
    """Yaw of the second consistency camera from the frontal one, radians (the dataset's yaw std)."""
    pitch_offset: float = 0.0
    """Pitch of the second consistency camera from the frontal one, radians."""
    depth_tolerance: float = 0.03
    """Occlusion test of consistency: depths must agree within this many world units."""
    drift_yaw_range: float = 0.7
    """Colour drift views span yaws frontal +- this, radians (2 sigma of the synthetic data's yaw)."""
    drift_views: int = 7
    """Views per latent for colour drift."""
    nfs_bins: int = 64
    """Histogram bins of the non-flatness score."""
    num_points: int = 10_000
    """Surface points per mesh and per true shape for ``geometry``."""
    batch: int = 8
    """Images rendered per forward pass."""
    renderer: RenderOverride = field(default_factory=RenderOverride)
    """Renderer and samples per ray of every metric (default: as the checkpoint rendered)."""
    out: Path = Path("metrics.json")
    """JSON file of the results and protocol."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""


def _real_dataset_path(args: MetricsArgs, gan: TrainedGAN | None) -> Path:
    if args.data is not None:
        return args.data
    if gan is None:
        raise SystemExit("pass --data (or --checkpoint, whose dataset is the default)")
    if gan.config.data is not None:
        return Path(gan.config.data)
    from wysiwyg_gan.data.synthetic import default_dataset

    synthetic = gan.config.synthetic
    return default_dataset(gan.config.schedule.full_resolution, synthetic.num_images, synthetic.seed)


def run_metrics(args: MetricsArgs) -> dict:
    """Compute ``args.metrics``; returns the JSON-ready report (also written to ``args.out``)."""
    from wysiwyg_gan.data.dataset import CameraImageDataset
    from wysiwyg_gan.distributed import resolve_device
    from wysiwyg_gan.inference import load_trained_gan

    metrics = list(dict.fromkeys(args.metrics))
    if not metrics:
        raise SystemExit("--metrics: name at least one of fid, kid, distribution, normals, consistency, drift, nfs, relief, geometry")
    positive = (
        ("num-fakes", args.num_fakes),
        ("num-seeds", args.num_seeds),
        ("batch", args.batch),
        ("nfs-bins", args.nfs_bins),
        ("distribution-fakes", args.distribution_fakes),
        ("distribution-reals", args.distribution_reals),
        ("precision-recall-k", args.precision_recall_k),
        ("drift-views", args.drift_views),
    )
    for name, value in positive:
        if value < 1:
            raise SystemExit(f"--{name} must be >= 1, got {value}")
    needs_model = [name for name in metrics if name != "geometry"]
    try:
        args.renderer.check()
    except ValueError as error:
        raise SystemExit(" ".join(str(error).split())) from None
    weights = None
    if "fid" in metrics or "kid" in metrics:
        weights = inception_weights_path(args.inception_weights)  # fail early, before loading or rendering
    gan = None
    report: dict = {"metrics": metrics, "protocol": {}, "results": {}, "seconds": {}}
    protocol = report["protocol"]
    if needs_model:
        if args.checkpoint is None:
            raise SystemExit(f"--checkpoint is needed for {', '.join(needs_model)}")
        device = resolve_device(args.device)
        gan = load_trained_gan(args.checkpoint, device)
        try:
            gan.set_renderer(args.renderer)
        except ValueError as error:
            raise SystemExit(" ".join(str(error).split())) from None
        protocol.update(
            checkpoint=str(gan.checkpoint),
            images_seen=gan.images_seen,
            resolution=gan.resolution,
            renderer=gan.renderer_report(),
            device=str(device),
            conditioning="frontal camera (yaw = pitch = pi/2)",
        )
    if "geometry" in metrics and args.reconstructions is None:
        raise SystemExit("--metrics geometry needs --reconstructions DIR (written by python -m wysiwyg_gan.invert)")
    geometry_seeds = list(range(args.seed, args.seed + args.num_seeds))

    if "fid" in metrics or "kid" in metrics:
        start = time.perf_counter()
        data = _real_dataset_path(args, gan)
        mirror = gan.config.xflip if args.mirror is None else args.mirror
        reals = CameraImageDataset(data, xflip=mirror, resolution=gan.resolution)
        seeds = list(range(args.seed, args.seed + args.num_fakes))
        render_labels = render_cameras(reals, len(seeds), args.seed)
        condition = render_labels if args.fid_condition == "camera" else None
        fakes = generated_images(gan, seeds, render_labels, condition, args.truncation_psi)
        values = fid_kid(
            fakes,
            reals,
            inception_weights=weights,
            device=gan.device,
            fid="fid" in metrics,
            kid="kid" in metrics,
            kid_subset_size=args.kid_subset_size,
            kid_subsets=args.kid_subsets,
            seed=args.seed,
            batch_size=args.batch,
        )
        fid_protocol = {
            "num_fakes": args.num_fakes,
            "num_reals": len(reals),
            "seeds": [seeds[0], seeds[-1]],
            "truncation_psi": args.truncation_psi,
            "real_set": str(data),
            "image_size": gan.resolution,
            "mirror": mirror,
            "render_cameras": f"uniform draws from the real set's {len(reals.labels)} labels (torch seed {args.seed})",
            "conditioning": "render camera" if args.fid_condition == "camera" else "frontal camera",
            "inception_weights": str(weights),
            "samples_per_ray": float(np.mean(fakes.samples_per_ray)),
        }
        if "fid" in metrics:
            report["results"]["fid"] = {"fid": values["fid"], **fid_protocol}
        if "kid" in metrics:
            report["results"]["kid"] = {
                key: values[key] for key in ("kid", "kid_std", "kid_subset_size", "kid_subsets")
            } | fid_protocol
        report["seconds"]["fid_kid"] = time.perf_counter() - start

    if "distribution" in metrics:
        start = time.perf_counter()
        report["results"]["distribution"] = _distribution(args, gan)
        report["seconds"]["distribution"] = time.perf_counter() - start

    if "normals" in metrics:
        start = time.perf_counter()
        report["results"]["normals"] = _normals(args, gan)
        report["seconds"]["normals"] = time.perf_counter() - start

    if "consistency" in metrics:
        start = time.perf_counter()
        values = multiview_consistency(
            gan,
            geometry_seeds,
            yaw_offset=args.yaw_offset,
            pitch_offset=args.pitch_offset,
            truncation_psi=args.geometry_truncation_psi,
            batch_size=args.batch,
            depth_tolerance=args.depth_tolerance,
        )
        report["results"]["consistency"] = values | {
            "seeds": [geometry_seeds[0], geometry_seeds[-1]],
            "truncation_psi": args.geometry_truncation_psi,
            "reference_camera": "frontal orbit camera (yaw = pitch = pi/2)",
            "yaw_offset": args.yaw_offset,
            "pitch_offset": args.pitch_offset,
            "depth_tolerance": args.depth_tolerance,
            "opacity_threshold": 0.5,
            "units": "mean absolute error of [0, 1] colours",
        }
        report["seconds"]["consistency"] = time.perf_counter() - start

    if "drift" in metrics:
        start = time.perf_counter()
        values = orbit_colour_drift(
            gan,
            geometry_seeds,
            yaw_range=args.drift_yaw_range,
            views=args.drift_views,
            truncation_psi=args.geometry_truncation_psi,
            batch_size=args.batch,
        )
        report["results"]["drift"] = values | _dataset_drift(args, gan) | {
            "seeds": [geometry_seeds[0], geometry_seeds[-1]],
            "truncation_psi": args.geometry_truncation_psi,
            "views": args.drift_views,
            "cameras": f"orbit, yaw frontal +- {args.drift_yaw_range} rad, frontal pitch",
            "units": "mean Euclidean distance of each view's opacity-weighted mean foreground colour "
            "to the latent's mean over views, [0, 1] RGB",
        }
        report["seconds"]["drift"] = time.perf_counter() - start

    if "nfs" in metrics:
        start = time.perf_counter()
        values = model_non_flatness(gan, geometry_seeds, args.geometry_truncation_psi, args.nfs_bins, batch_size=args.batch)
        report["results"]["nfs"] = values | {
            "seeds": [geometry_seeds[0], geometry_seeds[-1]],
            "truncation_psi": args.geometry_truncation_psi,
            "camera": "frontal orbit camera (yaw = pitch = pi/2)",
            "opacity_threshold": 0.5,
            "units": "nats (entropy of the foreground depth histogram)",
        }
        report["seconds"]["nfs"] = time.perf_counter() - start

    if "relief" in metrics:
        start = time.perf_counter()
        values = model_frame_relief(gan, geometry_seeds, args.geometry_truncation_psi, batch_size=args.batch)
        report["results"]["relief"] = values | {
            "seeds": [geometry_seeds[0], geometry_seeds[-1]],
            "truncation_psi": args.geometry_truncation_psi,
            "camera": "frontal orbit camera (yaw = pitch = pi/2)",
            "opacity_threshold": 0.5,
            "units": "world units (the triplane box's side is 1); border pixels that hit nothing count at the far bound",
        }
        report["seconds"]["relief"] = time.perf_counter() - start

    if "geometry" in metrics:
        start = time.perf_counter()
        values = reconstruction_accuracy(args.reconstructions, args.data, args.num_points, args.seed)
        report["results"]["geometry"] = values | {
            "reconstructions": str(args.reconstructions),
            "seed": args.seed,
            "units": "chamfer: world units, L2 (not squared), mean of both directions; normal consistency: mean |cos|",
        }
        report["seconds"]["geometry"] = time.perf_counter() - start

    if gan is not None:
        protocol["renderer"] = gan.renderer_report()  # now with the samples per ray the metrics took
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_strict_json(report), indent=2, default=str, allow_nan=False))
    return report


@dataclass
class _RealSet:
    """What ``distribution`` and ``normals`` compare against: the real set (unmirrored: a mirrored
    copy would be its original's nearest neighbour and shrink the k-NN balls), its encoder, and the
    fakes' seeds, render cameras and conditioning."""

    data: Path
    reals: CameraImageDataset
    encoder: FeatureEncoder
    seeds: list[int]
    render_labels: Tensor
    condition_labels: Tensor


def _real_set(args: MetricsArgs, gan: TrainedGAN, data: Path) -> _RealSet:
    from wysiwyg_gan.data.dataset import CameraImageDataset
    from wysiwyg_gan.feature_encoder import load_or_train_encoder

    reals = CameraImageDataset(data, resolution=gan.resolution)
    encoder = load_or_train_encoder(
        data, gan.resolution, args.encoder, args.encoder_mode, device=gan.device, log=lambda line: print(line, flush=True)
    )
    seeds = list(range(args.seed, args.seed + args.distribution_fakes))
    render_labels = render_cameras(reals, len(seeds), args.seed)
    condition_labels = render_labels if args.fid_condition == "camera" else orbit_labels(FRONTAL, FRONTAL, len(seeds))
    return _RealSet(data, reals, encoder, seeds, render_labels, condition_labels)


def _compare(args: MetricsArgs, gan: TrainedGAN, real_set: _RealSet, distribution, real_features) -> dict:
    """``distribution`` (``generator_distribution`` or ``normal_distribution``) of the fakes against
    ``real_features``, with the protocol both share."""
    encoder = real_set.encoder
    values = distribution(
        gan,
        encoder,
        real_features,
        real_set.seeds,
        real_set.render_labels,
        real_set.condition_labels,
        args.truncation_psi,
        args.precision_recall_k,
        args.kid_subset_size,
        args.kid_subsets,
        args.seed,
        batch_size=args.batch,
    )
    return values | {
        "seeds": [real_set.seeds[0], real_set.seeds[-1]],
        "truncation_psi": args.truncation_psi,
        "real_set": str(real_set.data),
        "image_size": gan.resolution,
        "mirror": False,
        "render_cameras": f"uniform draws from the real set's {len(real_set.reals.labels)} labels (torch seed {args.seed})",
        "conditioning": "render camera" if args.fid_condition == "camera" else "frontal camera",
        "kid_subsets": args.kid_subsets,
        "real_floor_protocol": f"two disjoint random halves of the reals (torch seed {args.seed})",
        "encoder": {
            "path": encoder.metadata.get("path"),
            "mode": encoder.mode,
            "feature_dim": encoder.feature_dim,
            "input_resolution": encoder.config.input_resolution,
            "trained_on": encoder.metadata.get("dataset"),
            "train_seconds": encoder.metadata.get("train_seconds"),
        },
    }


def _normals(args: MetricsArgs, gan: TrainedGAN) -> dict:
    """FID-N's idea: ``normal_distribution`` of ``args.distribution_fakes`` normal maps, with the
    protocol; ``skipped`` with the reason when the real set has no true normal maps."""
    from wysiwyg_gan.data.normal_maps import has_true_normals
    from wysiwyg_gan.normal_metrics import normal_distribution, real_normal_features

    data = _real_dataset_path(args, gan)
    if not has_true_normals(data):
        reason = f"{data} has no true normal maps (a normals/ folder, or synthetic geometry)"
        print(f"normals: skipped: {reason}", flush=True)
        return {"skipped": reason}
    real_set = _real_set(args, gan, data)
    real_normals = real_normal_features(
        real_set.encoder, data, len(real_set.reals), args.distribution_reals, args.seed, gan.resolution,
        batch_size=max(args.batch, 64),
    )
    return _compare(args, gan, real_set, normal_distribution, real_normals) | {
        "encoding": "camera-space unit normals (OpenCV axes) as (n + 1) / 2 times the opacity, black background",
    }


def _distribution(args: MetricsArgs, gan: TrainedGAN) -> dict:
    """Encoder FID, KID, precision and recall of ``args.distribution_fakes`` renders, with the protocol."""
    real_set = _real_set(args, gan, _real_dataset_path(args, gan))
    reals_features = real_features(
        real_set.encoder, real_set.reals, args.distribution_reals, args.seed, batch_size=max(args.batch, 64)
    )
    values = _compare(args, gan, real_set, generator_distribution, reals_features)
    values["frontal_view"]["render_cameras"] = (
        "the frontal camera for every latent: only the latents vary, so colour that changes with the view "
        "cannot pass for diversity"
    )
    return values


def _dataset_drift(args: MetricsArgs, gan: TrainedGAN) -> dict:
    """The drift of the real set's true objects (``shape_colour_drift``), when it is a synthetic set."""
    from wysiwyg_gan.data.dataset import _Source
    from wysiwyg_gan.data.synthetic import GEOMETRY_JSON, load_shape_specs

    data = _real_dataset_path(args, gan)
    if not _Source(Path(data)).exists(GEOMETRY_JSON):
        return {"dataset_drift": None, "dataset_drift_note": f"{data} has no ground truth to render"}
    specs = load_shape_specs(data)
    chosen = [specs[name] for name in sorted(specs)[: args.num_seeds]]
    reference = shape_colour_drift(chosen, args.drift_yaw_range, args.drift_views, resolution=gan.resolution)
    return {
        "dataset_drift": reference["drift"],
        "dataset_drift_note": f"the true objects of the first {len(chosen)} images of {data}, rendered by the dataset's renderer",
    }


def _strict_json(value):
    """NaN (an image without foreground) as null, so that strict JSON parsers read the report."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    return value


def _print_table(report: dict, out: Path) -> None:
    rows = []
    for name, values in report["results"].items():
        for key in {
            "fid": ("fid",),
            "kid": ("kid", "kid_std"),
            "distribution": ("fid", "kid", "precision", "recall")
            + tuple(f"real_floor.{key}" for key in ("fid", "kid", "precision", "recall"))
            + tuple(f"frontal_view.{key}" for key in ("fid", "precision", "recall"))
            + ("families.total_variation", "families.covered", "families.real_floor.total_variation"),
            "consistency": ("error", "valid_fraction"),
            "drift": ("drift", "dataset_drift"),
            "normals": ("fid", "kid", "precision", "recall", "real_floor.fid"),
            "nfs": ("nfs",),
            "relief": ("relief", "painted"),
            "geometry": ("chamfer", "normal_consistency"),
        }[name]:
            value = values
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                rows.append((name, key, f"{value:.6g}"))
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for row in rows:
            print(*row)
    else:
        table = Table(title="wysiwyg_gan.metrics")
        for column in ("metric", "value", ""):
            table.add_column(column)
        for name, key, value in rows:
            table.add_row(name, value, key)
        Console().print(table)
    print(f"results and protocol written to {out}")


def main(argv: list[str] | None = None) -> dict:
    import tyro

    from wysiwyg_gan.checkpoint import CheckpointError
    from wysiwyg_gan.data.dataset import DatasetError
    from wysiwyg_gan.feature_encoder import EncoderError

    args = tyro.cli(MetricsArgs, args=sys.argv[1:] if argv is None else argv, description=__doc__.split("\n\n")[0])
    try:
        report = run_metrics(args)
    except (CheckpointError, DatasetError, EncoderError, InceptionWeightsError, ReconstructionError) as error:
        raise SystemExit(f"error: {error}") from None
    _print_table(report, args.out)
    return report


if __name__ == "__main__":
    main()
