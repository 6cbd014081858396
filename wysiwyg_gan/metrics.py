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
  (``warp_by_depth``). Mean absolute error in [0, 1] colour units over pixels that are foreground
  in both views and not occluded; 0 for a perfectly consistent 3D scene.
* ``nfs``: non-flatness score (Skorokhodov et al. 2023) of frontal depth maps
  (``non_flatness_score``).
* ``geometry``: chamfer distance and normal consistency of reconstructed meshes against the
  ground-truth shapes of a synthetic dataset (``--reconstructions DIR`` written by
  ``python -m wysiwyg_gan.invert``; see ``reconstruction_accuracy``).
* ``distribution``: FID, KID, precision and recall (``wysiwyg_gan.distribution_metrics``) in the
  feature space of a small encoder trained on the real set itself (``wysiwyg_gan.feature_encoder``;
  no download), ``--distribution-fakes`` images rendered as for FID against the real set (without
  mirrored copies), plus the same numbers between two halves of the real set (``real_floor``: what
  a perfect generator scores at that sample size). The encoder is trained once per dataset and
  cached (``--encoder PATH`` names the file instead). Low recall is mode collapse.
* ``drift``: colour drift along an orbit (``orbit_colour_drift``): the change of an object's mean
  foreground colour over ``--drift-views`` views within +-``--drift-yaw-range`` of the frontal one;
  on a synthetic real set the true objects' drift is reported beside it (``dataset_drift``).

Latents are conditioned on the frontal camera, as the paper does at inference. Consistency, NFS
and drift use ``--geometry-truncation-psi`` (0.7, the truncation of the paper's figures: they
measure the 3D structure of the samples one looks at), FID, KID and distribution
``--truncation-psi`` (1.0: the whole distribution, as EG3D reports FID). The default metrics need
no download. Every number goes to ``--out`` (JSON) with the protocol that produced it (seeds,
truncation, cameras, real set, renderer, samples per ray, encoder). Examples::

    python -m wysiwyg_gan.metrics --checkpoint runs/cpu/checkpoint-000003200.pt
    python -m wysiwyg_gan.metrics --checkpoint runs/cpu --metrics distribution --encoder encoder.pt
    python -m wysiwyg_gan.metrics --checkpoint ckpt.pt --metrics fid kid --inception-weights pt_inception.pth
    python -m wysiwyg_gan.metrics --metrics geometry --reconstructions runs/invert
"""

from __future__ import annotations

import os

# Passive OpenMP waiting, as in wysiwyg_gan.train (a spinning pool is many times slower on a shared CPU).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Literal  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from jaxtyping import Bool, Float, Int, UInt8  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from learned_sampler import rays_from_cameras  # noqa: E402
from learned_sampler.validation import check_finite, check_floating, check_last_dims, check_positive_int  # noqa: E402
from wysiwyg_gan.data.dataset import split_camera_labels  # noqa: E402

if TYPE_CHECKING:
    import trimesh

    from wysiwyg_gan.data.synthetic import ShapeSpec
    from wysiwyg_gan.feature_encoder import FeatureEncoder
    from wysiwyg_gan.inference import TrainedGAN
    from wysiwyg_gan.rendering import RenderedImages

MetricName = Literal["fid", "kid", "distribution", "consistency", "drift", "nfs", "geometry"]
FRONTAL = math.pi / 2
"""Yaw and pitch of the frontal orbit camera (``wysiwyg_gan.snapshots.orbit_camera_labels``)."""


class InceptionWeightsError(RuntimeError):
    """The Inception weights for FID/KID are neither given nor downloadable."""


class ReconstructionError(ValueError):
    """A reconstructions folder (``invert.json`` and meshes) is missing or malformed."""


# ----- point clouds: chamfer distance and normal consistency -----


def _check_points(name: str, points: Tensor) -> Tensor:
    check_last_dims(name, check_floating(name, points), (3,))
    if points.dim() != 2 or len(points) == 0:
        raise ValueError(f"{name} must have shape (N, 3) with N >= 1, got {tuple(points.shape)}")
    return check_finite(name, points)


def nearest_neighbours(
    query: Float[Tensor, "n 3"],
    reference: Float[Tensor, "m 3"],
    method: Literal["auto", "kdtree", "chunked"] = "auto",
    query_chunk: int = 1024,
    reference_chunk: int = 16384,
) -> tuple[Float[Tensor, " n"], Int[Tensor, " n"]]:
    """Euclidean (L2, not squared) distance from each query point to its nearest reference point, and its index.

    ``chunked`` runs ``torch.cdist`` over ``query_chunk x reference_chunk`` blocks (64 MiB of
    float32 at the defaults), so memory stays bounded for any cloud size, on any device; it costs
    ``n * m`` distances (100k x 100k: ~150 s on one CPU core, a fraction of a second on a GPU).
    ``kdtree`` uses SciPy's ``cKDTree`` on the CPU (100k x 100k: ~0.5 s). ``auto`` picks the
    KD-tree for CPU tensors when SciPy is installed, else the chunked search. Either way the
    distances of the chosen neighbours are recomputed directly, so identical points give exactly 0
    (the matrix-product form of cdist loses precision to cancellation).
    """
    _check_points("query", query)
    _check_points("reference", reference)
    check_positive_int("query_chunk", query_chunk)
    check_positive_int("reference_chunk", reference_chunk)
    if method not in ("auto", "kdtree", "chunked"):
        raise ValueError(f"method must be auto, kdtree or chunked, got {method!r}")
    reference = reference.to(query.dtype)
    if method == "auto":
        method = "chunked"
        if query.device.type == "cpu":
            try:
                import scipy.spatial  # noqa: F401
            except ImportError:
                pass
            else:
                method = "kdtree"
    if method == "kdtree":
        from scipy.spatial import cKDTree

        tree = cKDTree(reference.detach().cpu().double().numpy())
        _, found = tree.query(query.detach().cpu().double().numpy(), k=1)
        indices = torch.as_tensor(found, dtype=torch.long, device=query.device)
        return (query - reference[indices]).norm(dim=-1), indices
    indices = torch.empty(len(query), dtype=torch.long, device=query.device)
    for start in range(0, len(query), query_chunk):
        block = query[start : start + query_chunk]
        best = torch.full((len(block),), math.inf, dtype=query.dtype, device=query.device)
        best_index = torch.zeros(len(block), dtype=torch.long, device=query.device)
        for ref_start in range(0, len(reference), reference_chunk):
            distances = torch.cdist(block, reference[ref_start : ref_start + reference_chunk])
            value, index = distances.min(dim=1)
            better = value < best
            best = torch.where(better, value, best)
            best_index = torch.where(better, index + ref_start, best_index)
        indices[start : start + len(block)] = best_index
    return (query - reference[indices]).norm(dim=-1), indices


def chamfer_distance(points_a: Float[Tensor, "n 3"], points_b: Float[Tensor, "m 3"]) -> dict[str, float]:
    """Symmetric chamfer distance with L2 (not squared) point distances.

    ``chamfer = (mean_a min_b |a - b| + mean_b min_a |a - b|) / 2``, in world units: identical
    clouds give 0, dense samples of one surface ~0, and a copy shifted by ``d`` gives ``d`` when its
    points are more than ``2 d`` apart (at most ``d`` in general). Also returns both directions:
    ``a_to_b`` (accuracy when ``a`` is a prediction) and ``b_to_a`` (completeness).
    """
    a_to_b, _ = nearest_neighbours(points_a, points_b)
    b_to_a, _ = nearest_neighbours(points_b, points_a)
    forward, backward = float(a_to_b.mean()), float(b_to_a.mean())
    return {"chamfer": 0.5 * (forward + backward), "a_to_b": forward, "b_to_a": backward}


def _abs_cosine(normals: Tensor, other: Tensor) -> Tensor:
    return (F.normalize(normals, dim=-1) * F.normalize(other, dim=-1)).sum(-1).abs()


def normal_consistency(
    points_a: Float[Tensor, "n 3"],
    normals_a: Float[Tensor, "n 3"],
    points_b: Float[Tensor, "m 3"],
    normals_b: Float[Tensor, "m 3"],
) -> float:
    """Mean ``|cos|`` between each point's normal and the normal of its nearest neighbour in the
    other cloud, averaged over both directions (``(mean_a + mean_b) / 2``), in [0, 1].

    The absolute value makes it blind to orientation (meshes from marching cubes or inverted faces
    may point inwards): identical normals and flipped normals both give 1, orthogonal ones 0.
    Normals need not be unit length (they are normalised).
    """
    return geometry_accuracy(points_a, normals_a, points_b, normals_b)["normal_consistency"]


def geometry_accuracy(
    pred_points: Float[Tensor, "n 3"],
    pred_normals: Float[Tensor, "n 3"],
    gt_points: Float[Tensor, "m 3"],
    gt_normals: Float[Tensor, "m 3"],
) -> dict[str, float]:
    """Chamfer distance (L2, symmetric mean, see ``chamfer_distance``) and normal consistency (see
    ``normal_consistency``) of a predicted oriented point cloud against the ground truth, with one
    nearest-neighbour search per direction.

    Keys: ``chamfer``, ``accuracy`` (mean distance pred -> gt), ``completeness`` (gt -> pred),
    ``normal_consistency``.
    """
    for name, points, normals in (("pred", pred_points, pred_normals), ("gt", gt_points, gt_normals)):
        _check_points(f"{name}_normals", normals)
        if normals.shape != points.shape:
            raise ValueError(f"{name}_normals {tuple(normals.shape)} must match {name}_points {tuple(points.shape)}")
    pred_to_gt, gt_index = nearest_neighbours(pred_points, gt_points)
    gt_to_pred, pred_index = nearest_neighbours(gt_points, pred_points)
    cos_pred = _abs_cosine(pred_normals, gt_normals.to(pred_normals.dtype)[gt_index])
    cos_gt = _abs_cosine(gt_normals, pred_normals.to(gt_normals.dtype)[pred_index])
    accuracy, completeness = float(pred_to_gt.mean()), float(gt_to_pred.mean())
    return {
        "chamfer": 0.5 * (accuracy + completeness),
        "accuracy": accuracy,
        "completeness": completeness,
        "normal_consistency": 0.5 * (float(cos_pred.mean()) + float(cos_gt.mean())),
    }


def sample_mesh_surface(
    mesh: trimesh.Trimesh | tuple[np.ndarray, np.ndarray], num_points: int, seed: int = 0
) -> tuple[Float[Tensor, "num_points 3"], Float[Tensor, "num_points 3"]]:
    """Points uniform over a triangle mesh's area and the normals of their faces (float32).

    ``mesh`` is a ``trimesh.Trimesh`` or ``(vertices (V, 3), faces (F, 3))`` arrays; deterministic
    for a seed.
    """
    import trimesh

    check_positive_int("num_points", num_points)
    if isinstance(mesh, tuple):
        vertices, faces = mesh
        mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64), process=False)
    if not isinstance(mesh, trimesh.Trimesh):
        raise ValueError(f"mesh must be a trimesh.Trimesh or (vertices, faces), got {type(mesh).__name__}")
    if len(mesh.faces) == 0 or not mesh.area > 0:
        raise ValueError("the mesh has no faces of positive area")
    points, face_index = trimesh.sample.sample_surface(mesh, num_points, seed=seed)
    normals = np.asarray(mesh.face_normals)[face_index]
    return torch.as_tensor(np.asarray(points), dtype=torch.float32), torch.as_tensor(normals, dtype=torch.float32)


def mesh_accuracy(
    mesh: trimesh.Trimesh | tuple[np.ndarray, np.ndarray], spec: ShapeSpec, num_points: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Chamfer distance and normal consistency of a mesh against a synthetic object's true surface.

    ``num_points`` points are sampled uniformly over the mesh's area (with face normals) and over
    the object's surface (``wysiwyg_gan.data.synthetic.sample_surface_points``, exact normals); both
    are compared by ``geometry_accuracy``. The mesh must be in the world coordinates of the
    dataset's cameras (where ``spec`` lives). Deterministic for a seed.
    """
    from wysiwyg_gan.data.synthetic import sample_surface_points

    pred_points, pred_normals = sample_mesh_surface(mesh, num_points, seed)
    gt_points, gt_normals = sample_surface_points(spec, num_points, torch.Generator().manual_seed(seed))
    return geometry_accuracy(pred_points, pred_normals, gt_points, gt_normals)


def reconstruction_accuracy(
    folder: str | os.PathLike, data: str | os.PathLike | None = None, num_points: int = 10_000, seed: int = 0
) -> dict:
    """Per-image and mean ``mesh_accuracy`` of the meshes of a reconstructions folder.

    The folder (written by ``python -m wysiwyg_gan.invert``) holds ``invert.json``::

        {"data": "<dataset path>", "results": [{"image": "img00000012.png", "mesh": "img00000012.ply", ...}, ...]}

    Mesh paths are relative to the folder (or absolute), in world coordinates; results without a
    ``mesh`` (inversions that produced none) are listed in ``images_without_mesh`` and left out of
    the means. The ground truth is
    ``load_shape_specs(data)[image]``; ``data`` overrides the manifest's (a relative manifest path
    is tried from the current directory, then from the folder).
    """
    import trimesh

    from wysiwyg_gan.data.synthetic import load_shape_specs

    folder = Path(folder)
    manifest = folder / "invert.json"
    if not manifest.is_file():
        raise ReconstructionError(f"{manifest}: missing; write reconstructions with python -m wysiwyg_gan.invert")
    try:
        content = json.loads(manifest.read_text())
        results = content["results"]
        if not isinstance(results, list) or not results:
            raise TypeError("results must be a non-empty list")
        entries = [(str(entry["image"]), entry.get("mesh")) for entry in results]
    except (ValueError, KeyError, TypeError) as error:
        raise ReconstructionError(f"{manifest}: malformed ({error!r}); expected {{'data': ..., 'results': [{{'image': ..., 'mesh': ...}}]}}") from error
    if data is None:
        if not content.get("data"):
            raise ReconstructionError(f"{manifest} names no dataset; pass --data")
        data = Path(content["data"])
        if not data.is_absolute() and not data.exists() and (folder / data).exists():
            data = folder / data
    specs = load_shape_specs(data)
    rows, missing = [], []
    for image, mesh_name in entries:
        if not mesh_name:  # invert could not extract a mesh (e.g. an empty SDF)
            missing.append(image)
            continue
        mesh_name = str(mesh_name)
        if image not in specs:
            raise ReconstructionError(f"{manifest}: image {image!r} has no ground truth in {data}")
        mesh_path = Path(mesh_name) if Path(mesh_name).is_absolute() else folder / mesh_name
        if not mesh_path.is_file():
            raise ReconstructionError(f"{mesh_path}: mesh of {image} is missing")
        try:
            mesh = trimesh.load(mesh_path, force="mesh")
            accuracy = mesh_accuracy(mesh, specs[image], num_points, seed)
        except Exception as error:  # noqa: BLE001 - trimesh reports unreadable files with many exception types
            raise ReconstructionError(f"{mesh_path}: unusable mesh of {image} ({type(error).__name__}: {error})") from error
        rows.append({"image": image, "mesh": mesh_name, **accuracy})
    if not rows:
        raise ReconstructionError(f"{manifest}: no result has a mesh")
    keys = ("chamfer", "accuracy", "completeness", "normal_consistency")
    mean = {key: float(np.mean([row[key] for row in rows])) for key in keys}
    return {
        **mean,
        "num_images": len(rows),
        "images_without_mesh": missing,
        "num_points": num_points,
        "data": str(data),
        "per_image": rows,
    }


# ----- non-flatness score -----


def non_flatness_score(
    depth: Float[Tensor, "batch 1 height width"] | Float[Tensor, "batch height width"],
    mask: Bool[Tensor, "batch 1 height width"] | Float[Tensor, "batch 1 height width"] | Tensor | None = None,
    bins: int = 64,
) -> Float[Tensor, " batch"]:
    """Non-flatness score of each depth map: the entropy (nats) of the histogram of its foreground depths.

    After Skorokhodov et al. 2023 ("3D generation on ImageNet"): each image's foreground depth
    values are min-max normalised to [0, 1] over that image's foreground, binned into ``bins``
    equal bins, and the entropy ``-sum p ln p`` of the bin frequencies is the score; the paper
    reports the mean over images. A flat depth map (one value) scores 0, a uniform ramp
    ``ln(bins)`` (the maximum). The paper's exact units (log base) and bin count are not certain
    here, so absolute values are not comparable with its table: compare models with the same
    ``bins``. Min-max normalisation makes the score blind to the depth range (tiny noise on a flat
    map spreads over every bin), as in the original.

    ``mask`` selects the foreground (bool, or float > 0.5, e.g. opacity); ``None`` uses every
    pixel. An image without foreground scores NaN.
    """
    check_floating("depth", depth)
    check_positive_int("bins", bins)
    if depth.dim() == 4:
        if depth.shape[1] != 1:
            raise ValueError(f"depth must have shape (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
    elif depth.dim() != 3:
        raise ValueError(f"depth must have shape (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
    batch = depth.shape[0]
    values = depth.reshape(batch, -1).double()
    if mask is None:
        keep = torch.ones_like(values, dtype=torch.bool)
    else:
        if mask.numel() != depth.numel():
            raise ValueError(f"mask {tuple(mask.shape)} must have the shape of depth {tuple(depth.shape)}")
        keep = mask.reshape(batch, -1)
        keep = keep if keep.dtype == torch.bool else keep > 0.5
    keep = keep & torch.isfinite(values)
    low = torch.where(keep, values, math.inf).amin(dim=1, keepdim=True)
    high = torch.where(keep, values, -math.inf).amax(dim=1, keepdim=True)
    span = high - low
    normalised = torch.where(span > 0, (values - low) / span.clamp_min(1e-300), torch.zeros_like(values))
    normalised = torch.where(keep, normalised, torch.zeros_like(values)).clamp(0.0, 1.0)
    index = (normalised * bins).long().clamp_max(bins - 1)
    counts = torch.zeros(batch, bins, dtype=torch.float64, device=depth.device).scatter_add_(1, index, keep.double())
    total = counts.sum(dim=1, keepdim=True)
    frequency = counts / total.clamp_min(1.0)
    entropy = -torch.where(frequency > 0, frequency * frequency.log(), torch.zeros_like(frequency)).sum(dim=1)
    entropy = torch.where(total[:, 0] > 0, entropy, torch.full_like(entropy, math.nan))
    return entropy.to(depth.dtype)


# ----- multi-view consistency -----


def unproject_depth(
    depth: Float[Tensor, "batch 1 height width"] | Float[Tensor, "batch height width"], labels: Float[Tensor, "batch 25"]
) -> Float[Tensor, "batch height width 3"]:
    """World points ``origin + direction * depth`` of every pixel centre of EG3D cameras ``labels``.

    ``depth`` is the distance along the unit ray direction (``RenderedImages.depth``), with the
    rays of ``learned_sampler.rays_from_cameras``, exactly as ``wysiwyg_gan.rendering`` renders and
    ``render_depth_normals`` lifts pixels.
    """
    check_floating("depth", depth)
    depth = depth[:, 0] if depth.dim() == 4 else depth
    if depth.dim() != 3 or labels.shape != (depth.shape[0], 25):
        raise ValueError(f"need depth (B, [1,] H, W) and labels (B, 25), got {tuple(depth.shape)} and {tuple(labels.shape)}")
    cam2world, intrinsics = split_camera_labels(labels.to(depth.dtype))
    rays = rays_from_cameras(cam2world, intrinsics, depth.shape[1], depth.shape[2], 0.0, 1.0)
    return rays.origins + rays.directions * depth[..., None]


def project_points(
    points: Float[Tensor, "batch *shape 3"], labels: Float[Tensor, "batch 25"]
) -> tuple[Float[Tensor, "batch *shape 2"], Float[Tensor, "batch *shape"], Float[Tensor, "batch *shape"]]:
    """Project world points into EG3D cameras: normalised image coordinates ``(u, v)`` (pixel
    centres at ``(i + 0.5) / W``, the inverse of ``rays_from_cameras``), the distance from the
    camera centre (the renderer's depth) and the camera-space ``z`` (> 0 in front)."""
    check_last_dims("points", check_floating("points", points), (3,))
    batch = points.shape[0]
    if labels.shape != (batch, 25):
        raise ValueError(f"labels must have shape ({batch}, 25), got {tuple(labels.shape)}")
    cam2world, intrinsics = split_camera_labels(labels.to(points.dtype))
    world2cam = torch.linalg.inv(cam2world)
    flat = points.reshape(batch, -1, 3)
    camera = flat @ world2cam[:, :3, :3].transpose(1, 2) + world2cam[:, None, :3, 3]
    z = camera[..., 2]
    safe_z = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    x, y = camera[..., 0] / safe_z, camera[..., 1] / safe_z
    u = intrinsics[:, 0, 0, None] * x + intrinsics[:, 0, 1, None] * y + intrinsics[:, 0, 2, None]
    v = intrinsics[:, 1, 1, None] * y + intrinsics[:, 1, 2, None]
    distance = (flat - cam2world[:, None, :3, 3]).norm(dim=-1)
    shape = points.shape[:-1]
    return torch.stack([u, v], dim=-1).reshape(*shape, 2), distance.reshape(shape), z.reshape(shape)


@dataclass
class DepthWarp:
    """The destination view resampled at the projections of the source view's pixels."""

    warped_image: Float[Tensor, "batch channels height width"]
    """The destination image, bilinearly sampled where each source pixel's 3D point projects."""
    warped_depth: Float[Tensor, "batch 1 height width"]
    """The destination depth sampled there."""
    projected_depth: Float[Tensor, "batch 1 height width"]
    """Distance from the destination camera to each source pixel's 3D point."""
    valid: Bool[Tensor, "batch 1 height width"]
    """Source foreground, in front of and inside the destination image, on destination foreground,
    and not occluded there: ``|projected_depth - warped_depth| <= depth_tolerance`` and no surface of
    the 2x2 pixels around the projection is nearer than ``projected_depth - depth_tolerance``."""
    error: Float[Tensor, "batch 1 height width"]
    """Mean absolute difference over channels between the source image and ``warped_image``."""

    def mean_error(self) -> Float[Tensor, " batch"]:
        """Mean ``error`` over the valid pixels of each image (NaN where none is valid)."""
        valid = self.valid.to(self.error.dtype)
        count = valid.flatten(1).sum(1)
        total = (self.error * valid).flatten(1).sum(1)
        return torch.where(count > 0, total / count.clamp_min(1.0), torch.full_like(total, math.nan))

    def valid_fraction(self) -> Float[Tensor, " batch"]:
        return self.valid.flatten(1).float().mean(1)


def _footprint_min(depth: Tensor, uv: Tensor) -> Tensor:
    """The smallest of the 2x2 depths that bilinear sampling at ``uv`` mixes, ``(B, 1, H', W')``.

    Bilinear depth is unreliable at silhouettes (a foreground depth mixed with the background's
    far value can match a hidden point behind the surface); the nearest surface in the footprint
    is not.
    """
    height, width = depth.shape[-2:]
    padded = F.pad(depth, (1, 1, 1, 1), mode="replicate")
    corners = -F.max_pool2d(-padded, kernel_size=2, stride=1)  # (H + 1, W + 1): min around each pixel corner
    column = (uv[..., 0] * width).round().long().clamp(0, width)  # the corner nearest to the point
    row = (uv[..., 1] * height).round().long().clamp(0, height)
    flat = corners.flatten(2)  # (B, 1, (H + 1) (W + 1))
    index = (row * (width + 1) + column).flatten(1)[:, None]
    return flat.gather(2, index).reshape(uv.shape[0], 1, *uv.shape[1:-1])


def warp_by_depth(
    src_image: Float[Tensor, "batch channels height width"],
    src_depth: Float[Tensor, "batch 1 height width"],
    src_labels: Float[Tensor, "batch 25"],
    dst_image: Float[Tensor, "batch channels dst_height dst_width"],
    dst_depth: Float[Tensor, "batch 1 dst_height dst_width"],
    dst_labels: Float[Tensor, "batch 25"],
    src_mask: Tensor | None = None,
    dst_mask: Tensor | None = None,
    depth_tolerance: float = 0.03,
) -> DepthWarp:
    """Warp ``dst_image`` into the source view through the source depth.

    Every source pixel is lifted to 3D (``unproject_depth``), projected into the destination
    camera (``project_points``), and the destination image, depth and mask are sampled there
    bilinearly (``grid_sample``, pixel centres, border padding). Depths are distances along unit
    rays in world units (``RenderedImages.depth``); masks are bool or float (> 0.5 is foreground;
    ``None``: everything). For a scene seen consistently by both views the warped image equals the
    source image wherever ``valid``, up to bilinear interpolation.
    """
    for name, tensor in (("src_image", src_image), ("src_depth", src_depth), ("dst_image", dst_image), ("dst_depth", dst_depth)):
        check_floating(name, tensor)
        if tensor.dim() != 4:
            raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(tensor.shape)}")
    batch, _, height, width = src_image.shape
    if src_depth.shape != (batch, 1, height, width) or dst_depth.shape[:2] != (batch, 1):
        raise ValueError(f"depths must be (B, 1, H, W) like their images, got {tuple(src_depth.shape)}, {tuple(dst_depth.shape)}")
    if dst_image.shape[0] != batch or dst_image.shape[1] != src_image.shape[1] or dst_image.shape[2:] != dst_depth.shape[2:]:
        raise ValueError(f"dst_image {tuple(dst_image.shape)} does not match src_image {tuple(src_image.shape)} and dst_depth")

    def as_mask(mask: Tensor | None, like: Tensor) -> Tensor:
        if mask is None:
            return torch.ones_like(like)
        if mask.shape != like.shape:
            raise ValueError(f"mask {tuple(mask.shape)} must have the shape of its depth {tuple(like.shape)}")
        return mask.to(like.dtype)

    src_fore = as_mask(src_mask, src_depth) > 0.5
    dst_fore = as_mask(dst_mask, dst_depth)
    points = unproject_depth(src_depth, src_labels)
    uv, distance, z = project_points(points, dst_labels)
    grid = uv * 2.0 - 1.0  # align_corners=False: -1 and 1 are the image's outer edges
    stacked = torch.cat([dst_image, dst_depth, dst_fore], dim=1)
    sampled = F.grid_sample(stacked, grid.to(stacked.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    warped_image, warped_depth, warped_fore = sampled[:, :-2], sampled[:, -2:-1], sampled[:, -1:]
    inside = ((uv >= 0) & (uv <= 1)).all(dim=-1)[:, None] & (z[:, None] > 0)
    projected = distance[:, None].to(src_depth.dtype)
    nearest_surface = _footprint_min(dst_depth, uv)
    visible = ((projected - warped_depth).abs() <= depth_tolerance) & (projected <= nearest_surface + depth_tolerance)
    valid = src_fore & inside & (warped_fore > 0.5) & visible
    error = (src_image - warped_image).abs().mean(dim=1, keepdim=True)
    return DepthWarp(warped_image, warped_depth, projected, valid, error)


def _batches(seeds: Sequence[int], batch_size: int):
    check_positive_int("batch_size", batch_size)
    for start in range(0, len(seeds), batch_size):
        yield list(seeds[start : start + batch_size])


def orbit_labels(yaw: float, pitch: float, count: int, device: torch.device | str = "cpu") -> Float[Tensor, "count 25"]:
    """``count`` copies of the EG3D label of the orbit camera at ``(yaw, pitch)`` (frontal: pi/2, pi/2)."""
    from wysiwyg_gan.snapshots import orbit_camera_labels

    return orbit_camera_labels(torch.full((count,), float(yaw)), torch.full((count,), float(pitch))).to(device)


@torch.no_grad()
def multiview_consistency(
    gan: TrainedGAN,
    seeds: Sequence[int],
    yaw_offset: float = 0.35,
    pitch_offset: float = 0.0,
    truncation_psi: float = 0.7,
    resolution: int | None = None,
    batch_size: int = 8,
    depth_tolerance: float = 0.03,
    opacity_threshold: float = 0.5,
) -> dict:
    """Photometric error between a frontal render and a yawed render warped onto it by depth.

    For each seed the latent (conditioned on the frontal camera) is rendered from the frontal
    camera (the reference) and from the orbit camera at ``(pi/2 + yaw_offset, pi/2 +
    pitch_offset)``; ``warp_by_depth`` lifts the second view's pixels by its depth and samples the
    reference image where they land. The error is the mean absolute colour difference in [0, 1]
    units over pixels that are foreground in both views (opacity > ``opacity_threshold``) and not
    occluded (depths agree within ``depth_tolerance`` world units; 0.03 is ~2 pixels of a 64 px
    frontal view at EG3D's camera distance). ``error`` is the mean over seeds with any valid pixel.
    """
    resolution = resolution or gan.resolution
    per_seed: list[float] = []
    fractions: list[float] = []
    samples: list[float] = []
    for batch in _batches(list(seeds), batch_size):
        count = len(batch)
        reference = orbit_labels(FRONTAL, FRONTAL, count, gan.device)
        second = orbit_labels(FRONTAL + yaw_offset, FRONTAL + pitch_offset, count, gan.device)
        ws = gan.mapping(gan.latents(batch), reference, truncation_psi=truncation_psi)
        field = gan.field(ws)
        ref_images = gan.render(field, reference, resolution)
        src_images = gan.render(field, second, resolution)
        warp = warp_by_depth(
            (src_images.image + 1) / 2,
            src_images.depth,
            second,
            (ref_images.image + 1) / 2,
            ref_images.depth,
            reference,
            src_mask=src_images.opacity > opacity_threshold,
            dst_mask=(ref_images.opacity > opacity_threshold).float(),
            depth_tolerance=depth_tolerance,
        )
        per_seed += warp.mean_error().tolist()
        fractions += warp.valid_fraction().tolist()
        samples += [ref_images.samples_per_ray, src_images.samples_per_ray]
    finite = [value for value in per_seed if math.isfinite(value)]
    return {
        "error": float(np.mean(finite)) if finite else math.nan,
        "valid_fraction": float(np.mean(fractions)),
        "seeds_with_valid_pixels": len(finite),
        "per_seed": per_seed,
        "samples_per_ray": float(np.mean(samples)),
    }


# ----- colour drift along an orbit -----


def mean_foreground_colour(
    images: Float[Tensor, "*batch 3 height width"], opacities: Float[Tensor, "*batch 1 height width"], min_coverage: float = 1.0
) -> Float[Tensor, "*batch 3"]:
    """Opacity-weighted mean foreground colour of images composited over black, in their units.

    A pixel composited over black is ``opacity * surface colour`` (the GAN's renders mapped to
    [0, 1], and the synthetic dataset's), so ``sum(image) / sum(opacity)`` is the mean surface
    colour weighted by opacity. NaN where the summed opacity is below ``min_coverage`` pixels.
    """
    check_floating("images", images)
    check_floating("opacities", opacities)
    if images.dim() < 3 or images.shape[-3] != 3 or opacities.shape != (*images.shape[:-3], 1, *images.shape[-2:]):
        raise ValueError(
            f"need images (..., 3, H, W) and opacities (..., 1, H, W), got {tuple(images.shape)} and {tuple(opacities.shape)}"
        )
    coverage = opacities.sum(dim=(-3, -2, -1))
    colour = images.sum(dim=(-2, -1)) / coverage.clamp_min(1e-12)[..., None]
    return torch.where((coverage >= min_coverage)[..., None], colour, torch.full_like(colour, math.nan))


def colour_drift(
    images: Float[Tensor, "batch views 3 height width"],
    opacities: Float[Tensor, "batch views 1 height width"],
    min_coverage: float = 1.0,
) -> Float[Tensor, " batch"]:
    """How much the mean foreground colour of one object changes between views of it.

    ``images[b]`` are views of one object (colour in [0, 1], composited over black) and
    ``opacities[b]`` their coverage. Each view's ``mean_foreground_colour`` is compared with the
    object's average over its views: the drift is the mean over views of the Euclidean distance
    to that average, in [0, 1] RGB units (at most sqrt(3)). Identical views give exactly 0; NaN
    where a view has less than ``min_coverage`` pixels of foreground.
    """
    if images.dim() != 5:
        raise ValueError(f"images must have shape (B, V, 3, H, W), got {tuple(images.shape)}")
    colours = mean_foreground_colour(images, opacities, min_coverage).double()  # (B, V, 3)
    # Offsets from the first view make identical views exactly 0 (a mean of equal floats need not be).
    offsets = colours - colours[:, :1]
    return (offsets - offsets.mean(dim=1, keepdim=True)).norm(dim=-1).mean(dim=1).to(images.dtype)


def orbit_yaws(yaw_range: float, views: int) -> list[float]:
    """``views`` yaw offsets evenly spaced over ``[-yaw_range, yaw_range]`` (0 alone for one view)."""
    check_positive_int("views", views)
    return [yaw_range * (2 * view / (views - 1) - 1) for view in range(views)] if views > 1 else [0.0]


def _drift_summary(per_seed: list[float], yaws: list[float]) -> dict:
    finite = [value for value in per_seed if math.isfinite(value)]
    return {
        "drift": float(np.mean(finite)) if finite else math.nan,
        "seeds_with_foreground": len(finite),
        "per_seed": per_seed,
        "yaws": yaws,
    }


@torch.no_grad()
def orbit_colour_drift(
    gan: TrainedGAN,
    seeds: Sequence[int],
    yaw_range: float = 0.7,
    views: int = 7,
    pitch_offset: float = 0.0,
    truncation_psi: float = 0.7,
    resolution: int | None = None,
    batch_size: int = 8,
) -> dict:
    """``colour_drift`` of each latent rendered from ``views`` orbit cameras around the frontal one.

    The latent (conditioned on the frontal camera) is rendered at yaws ``pi/2 + orbit_yaws(yaw_range,
    views)`` and pitch ``pi/2 + pitch_offset``; the default spans +-0.7 rad (2 sigma of the synthetic
    dataset's yaw). ``drift`` is the mean over seeds whose views all have foreground. A 3D-consistent
    object under fixed lighting drifts only by shading; ``shape_colour_drift`` measures that for
    the synthetic dataset's true objects.
    """
    resolution = resolution or gan.resolution
    yaws = orbit_yaws(yaw_range, views)
    per_seed: list[float] = []
    samples: list[float] = []
    for batch in _batches(list(seeds), batch_size):
        count = len(batch)
        condition = orbit_labels(FRONTAL, FRONTAL, count, gan.device)
        field = gan.field(gan.mapping(gan.latents(batch), condition, truncation_psi=truncation_psi))
        images, opacities = [], []
        for yaw in yaws:
            rendered = gan.render(field, orbit_labels(FRONTAL + yaw, FRONTAL + pitch_offset, count, gan.device), resolution)
            images.append((rendered.image + 1) / 2)
            opacities.append(rendered.opacity)
            samples.append(rendered.samples_per_ray)
        per_seed += colour_drift(torch.stack(images, 1), torch.stack(opacities, 1)).tolist()
    return _drift_summary(per_seed, yaws) | {"samples_per_ray": float(np.mean(samples))}


def shape_colour_drift(
    specs: Sequence[ShapeSpec], yaw_range: float = 0.7, views: int = 7, pitch_offset: float = 0.0, resolution: int = 64
) -> dict:
    """``orbit_colour_drift``'s protocol on synthetic objects, rendered by the dataset's own renderer
    (``wysiwyg_gan.data.synthetic.render_shapes``): the drift of real, 3D-consistent objects, which
    Lambertian shading under the fixed light makes slightly positive. A reference for the GAN's."""
    from wysiwyg_gan.data.synthetic import render_shapes

    if not specs:
        raise ValueError("specs must hold at least one ShapeSpec")
    yaws = orbit_yaws(yaw_range, views)
    labels = torch.cat([orbit_labels(FRONTAL + yaw, FRONTAL + pitch_offset, len(specs)) for yaw in yaws])
    rgb, coverage = render_shapes(list(specs) * len(yaws), labels, resolution)
    images = rgb.permute(0, 3, 1, 2).reshape(len(yaws), len(specs), 3, resolution, resolution).transpose(0, 1)
    opacities = coverage.reshape(len(yaws), len(specs), 1, resolution, resolution).transpose(0, 1)
    return _drift_summary(colour_drift(images, opacities).tolist(), yaws)


@torch.no_grad()
def model_non_flatness(
    gan: TrainedGAN,
    seeds: Sequence[int],
    truncation_psi: float = 0.7,
    bins: int = 64,
    resolution: int | None = None,
    batch_size: int = 8,
    opacity_threshold: float = 0.5,
) -> dict:
    """``non_flatness_score`` of the frontal depth maps of ``seeds`` (foreground: opacity >
    ``opacity_threshold``); ``nfs`` is the mean over images with foreground."""
    resolution = resolution or gan.resolution
    scores: list[float] = []
    samples: list[float] = []
    for batch in _batches(list(seeds), batch_size):
        labels = orbit_labels(FRONTAL, FRONTAL, len(batch), gan.device)
        images = gan.render(gan.field(gan.mapping(gan.latents(batch), labels, truncation_psi)), labels, resolution)
        scores += non_flatness_score(images.depth, images.opacity > opacity_threshold, bins).tolist()
        samples.append(images.samples_per_ray)
    finite = [value for value in scores if math.isfinite(value)]
    return {
        "nfs": float(np.mean(finite)) if finite else math.nan,
        "images_with_foreground": len(finite),
        "per_seed": scores,
        "bins": bins,
        "samples_per_ray": float(np.mean(samples)),
    }


# ----- FID and KID -----


def _images_to_uint8(images: Float[Tensor, "batch 3 height width"]) -> UInt8[Tensor, "batch 3 height width"]:
    """[-1, 1] colour to uint8, as StyleGAN saves images (``x * 127.5 + 128``, clamped)."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


class _UInt8Images(Dataset):
    """Images as uint8 ``(3, H, W)`` tensors, the input torch-fidelity expects: from a tensor or a
    ``CameraImageDataset`` (its [-1, 1] floats are rounded back to bytes)."""

    def __init__(self, source: Tensor | Dataset):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Tensor:
        item = self.source[index]
        if isinstance(item, tuple):
            item = item[0]
        if item.dtype != torch.uint8:
            item = ((item + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return item


def _generated_images_class():
    from torch_fidelity import GenerativeModelBase

    class GeneratedImages(GenerativeModelBase):
        """A generator as torch-fidelity's generative-model input: batch ``k`` renders the next seeds
        of ``seeds`` (torch-fidelity's own noise is ignored), so images stream without being stored."""

        def __init__(self, gan, seeds, render_labels, condition_labels, truncation_psi, resolution):
            super().__init__()
            self._gan = [gan]  # not a submodule: torch-fidelity's .cuda() must not move the generator
            self.seeds = list(seeds)
            self.render_labels = render_labels
            self.condition_labels = condition_labels
            self.truncation_psi = truncation_psi
            self.resolution = resolution
            self.position = 0
            self.samples_per_ray: list[float] = []

        @property
        def z_size(self) -> int:
            return 1

        @property
        def z_type(self) -> str:
            return "normal"

        @property
        def num_classes(self) -> int:
            return 0

        def __len__(self) -> int:
            return len(self.seeds)

        @torch.no_grad()
        def forward(self, noise: Tensor) -> Tensor:
            gan = self._gan[0]
            start, stop = self.position, self.position + noise.shape[0]
            if stop > len(self.seeds):
                raise RuntimeError("torch-fidelity asked for more images than seeds")
            self.position = stop
            images = render_seeds(
                gan,
                self.seeds[start:stop],
                self.render_labels[start:stop],
                self.condition_labels[start:stop],
                self.truncation_psi,
                self.resolution,
            )
            self.samples_per_ray.append(images.samples_per_ray)
            return _images_to_uint8(images.image).to(noise.device)

    return GeneratedImages


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


@torch.no_grad()
def generated_features(
    gan: TrainedGAN,
    encoder: FeatureEncoder,
    seeds: Sequence[int],
    render_labels: Float[Tensor, "num_seeds 25"],
    condition_labels: Float[Tensor, "num_seeds 25"],
    truncation_psi: float = 1.0,
    resolution: int | None = None,
    batch_size: int = 8,
) -> tuple[Float[Tensor, "num_seeds feature_dim"], float]:
    """Encoder features of the seeds' renders (``render_seeds``, ``batch_size`` at a time, quantised
    to uint8 as the real images are) and the mean field samples per ray. Renders below the run's
    resolution are upsampled to it first, as the discriminator sees them."""
    features, samples = [], []
    for start in range(0, len(seeds), batch_size):
        stop = start + batch_size
        images = render_seeds(gan, seeds[start:stop], render_labels[start:stop], condition_labels[start:stop], truncation_psi, resolution)
        image = images.image
        if image.shape[-1] != gan.resolution:
            image = F.interpolate(image, size=(gan.resolution,) * 2, mode="bilinear", align_corners=False)
        features.append(encoder.features(_images_to_uint8(image)).cpu())
        samples.append(images.samples_per_ray)
    return torch.cat(features), float(np.mean(samples))


def real_features(
    encoder: FeatureEncoder, reals: Dataset, count: int, seed: int, batch_size: int = 64
) -> Float[Tensor, "num_reals feature_dim"]:
    """Encoder features of ``count`` real images at most: all of them, or a seeded random subset."""
    indices = torch.arange(len(reals))
    if len(reals) > count:
        indices = torch.randperm(len(reals), generator=torch.Generator().manual_seed(seed))[:count].sort().values
    return encoder.dataset_features(reals, indices.tolist(), batch_size=batch_size)


def generator_distribution(
    gan: TrainedGAN,
    encoder: FeatureEncoder,
    reals: Float[Tensor, "num_reals feature_dim"],
    seeds: Sequence[int],
    render_labels: Float[Tensor, "num_seeds 25"],
    condition_labels: Float[Tensor, "num_seeds 25"],
    truncation_psi: float = 1.0,
    k: int = 3,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
    resolution: int | None = None,
    batch_size: int = 8,
) -> dict:
    """``feature_report`` of the seeds' renders from ``render_labels`` against the real features,
    plus ``frontal_view``: FID, KID, precision and recall of the same latents all rendered from the
    frontal camera, so that only the latents vary and colour that changes with the view cannot pass
    for diversity; and ``samples_per_ray``. With a supervised encoder (the synthetic data) it adds
    ``families``: ``family_coverage`` of the shape families its head predicts, for both camera sets."""
    from wysiwyg_gan.distribution_metrics import compare_features, feature_report

    features, samples_per_ray = generated_features(
        gan, encoder, seeds, render_labels, condition_labels, truncation_psi, resolution, batch_size
    )
    report = feature_report(reals, features, k, kid_subset_size, kid_subsets, seed)
    frontal = orbit_labels(FRONTAL, FRONTAL, len(seeds))
    frontal_features, _ = generated_features(gan, encoder, seeds, frontal, frontal, truncation_psi, resolution, batch_size)
    frontal_report = compare_features(reals, frontal_features, k, kid_subset_size, kid_subsets, seed)
    report["frontal_view"] = {key: frontal_report[key] for key in ("fid", "kid", "kid_std", "precision", "recall")}
    if encoder.mode == "supervised":
        from wysiwyg_gan.data.synthetic import FAMILIES
        from wysiwyg_gan.distribution_metrics import family_coverage

        real_families = encoder.predict_families(reals)
        report["families"] = family_coverage(real_families, encoder.predict_families(features), len(FAMILIES), seed)
        report["families"]["names"] = list(FAMILIES)
        frontal_families = family_coverage(real_families, encoder.predict_families(frontal_features), len(FAMILIES), seed)
        report["frontal_view"]["families"] = {key: frontal_families[key] for key in ("total_variation", "covered", "fake_shares")}
    report["samples_per_ray"] = samples_per_ray
    return report


def generated_images(
    gan: TrainedGAN,
    seeds: Sequence[int],
    render_labels: Float[Tensor, "num_seeds 25"],
    condition_labels: Float[Tensor, "num_seeds 25"] | None = None,
    truncation_psi: float = 1.0,
    resolution: int | None = None,
):
    """The images of ``seeds`` rendered from ``render_labels`` (one per seed) as a torch-fidelity
    generative-model input for ``fid_kid``; latents are conditioned on ``condition_labels``
    (default: the frontal camera). Rendered lazily, a torch-fidelity batch at a time, once."""
    if render_labels.shape != (len(seeds), 25):
        raise ValueError(f"render_labels must have shape ({len(seeds)}, 25), got {tuple(render_labels.shape)}")
    if condition_labels is None:
        condition_labels = orbit_labels(FRONTAL, FRONTAL, len(seeds))
    return _generated_images_class()(gan, seeds, render_labels, condition_labels, truncation_psi, resolution or gan.resolution)


def inception_weights_path(path: str | os.PathLike | None = None) -> Path:
    """A local file of the Inception weights torch-fidelity's FID/KID use (``pt_inception-2015-12-05``).

    ``path`` when given (it must exist); else the file in torch's hub cache
    (``$TORCH_HOME/hub/checkpoints``), downloaded there first if missing. Raises
    ``InceptionWeightsError`` with instructions when neither works (offline).
    """
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InceptionWeightsError(f"--inception-weights {path}: no such file")
        return path
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(URL_INCEPTION_V3).path).name
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(target), progress=False)
    except Exception as error:  # noqa: BLE001 - URLError, HTTPError, timeouts, SSL and OS errors alike
        raise InceptionWeightsError(
            f"FID/KID need torch-fidelity's Inception weights and the download failed "
            f"({type(error).__name__}: {error}). Offline, pass --inception-weights PATH with the file "
            f"{target.name} (get it from {URL_INCEPTION_V3}, or copy it from a machine where torch-fidelity "
            f"downloaded it into its torch hub cache, ~/.cache/torch/hub/checkpoints)"
        ) from error
    return target


def _count(images) -> int:
    if isinstance(images, (str, Path)):
        folder = Path(images)
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder of images")
        return sum(1 for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return len(images)


def fid_kid(
    fakes: UInt8[Tensor, "num_fakes 3 height width"] | Dataset | str | Path,
    reals: UInt8[Tensor, "num_reals 3 height width"] | Dataset | str | Path,
    inception_weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    fid: bool = True,
    kid: bool = True,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
    batch_size: int = 64,
) -> dict:
    """FID and KID between two image sets with torch-fidelity's Inception (upsampled to 299 px inside).

    Each set is a uint8 ``(N, 3, H, W)`` tensor, a Dataset of uint8 ``(3, H, W)`` tensors (or of
    ``CameraImageDataset`` items), a folder of PNG/JPEG files, or ``generated_images(...)``.
    ``kid_subset_size`` is lowered to the smaller set's size when needed (reported back). KID's
    subsets are drawn with ``seed``: the numbers are deterministic. Raises
    ``InceptionWeightsError`` when no weights are available (see ``inception_weights_path``).
    """
    import torch_fidelity

    if not (fid or kid):
        raise ValueError("ask for fid, kid or both")
    weights = inception_weights_path(inception_weights)
    device = torch.device(device)
    inputs = []
    for images in (fakes, reals):
        if isinstance(images, Tensor):
            if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"image tensors must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
            images = _UInt8Images(images.cpu())
        elif isinstance(images, Path):
            images = str(images)
        elif isinstance(images, Dataset) and not isinstance(images, torch.nn.Module):
            images = _UInt8Images(images)
        inputs.append(images)
    counts = [_count(images) for images in inputs]
    if min(counts) < 2:
        raise ValueError(f"FID/KID need at least 2 images per set, got {counts[0]} fakes and {counts[1]} reals")
    subset = min(kid_subset_size, *counts)
    kwargs = dict(
        input1=inputs[0],
        input2=inputs[1],
        input1_model_num_samples=counts[0],
        cuda=device.type == "cuda",
        fid=fid,
        kid=kid,
        kid_subset_size=subset,
        kid_subsets=kid_subsets,
        rng_seed=seed,
        batch_size=batch_size,
        feature_extractor_weights_path=str(weights),
        cache=False,
        verbose=False,
        save_cpu_ram=True,  # no DataLoader worker processes
    )
    values = torch_fidelity.calculate_metrics(**kwargs)
    result: dict = {"num_fakes": counts[0], "num_reals": counts[1], "inception_weights": str(weights)}
    if fid:
        result["fid"] = float(values["frechet_inception_distance"])
    if kid:
        result.update(
            kid=float(values["kernel_inception_distance_mean"]),
            kid_std=float(values["kernel_inception_distance_std"]),
            kid_subset_size=subset,
            kid_subsets=kid_subsets,
        )
    return result


# ----- command line -----


@dataclass
class MetricsArgs:
    """``python -m wysiwyg_gan.metrics``: FID/KID, encoder distribution metrics, multi-view
    consistency, colour drift, non-flatness and geometry accuracy."""

    checkpoint: Path | None = None
    """Checkpoint written by ``wysiwyg_gan.train``, or a run folder (its newest checkpoint); needed by
    every metric but ``geometry``."""
    metrics: tuple[MetricName, ...] = ("distribution", "consistency", "drift", "nfs")
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
    the real set's size matches the real-vs-real floor's sample sizes (1000: ~3 min on one CPU
    thread for the CPU preset)."""
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


def _renderer(gan: TrainedGAN) -> dict:
    if gan.uses_learned_sampler:
        return {"mode": "learned sampler", "target_samples": gan.sampler.config.target_samples}
    render = gan.config.render
    return {"mode": "two-pass", "coarse_samples": render.coarse_samples, "fine_samples": render.fine_samples}


def render_cameras(reals, count: int, seed: int) -> Tensor:
    """``count`` render cameras drawn uniformly from the real set's labels (torch seed ``seed``)."""
    picks = torch.randint(len(reals.labels), (count,), generator=torch.Generator().manual_seed(seed))
    return reals.labels[picks]


def run_metrics(args: MetricsArgs) -> dict:
    """Compute ``args.metrics``; returns the JSON-ready report (also written to ``args.out``)."""
    from wysiwyg_gan.data.dataset import CameraImageDataset
    from wysiwyg_gan.inference import load_trained_gan, resolve_device

    metrics = list(dict.fromkeys(args.metrics))
    if not metrics:
        raise SystemExit("--metrics: name at least one of fid, kid, distribution, consistency, drift, nfs, geometry")
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
        protocol.update(
            checkpoint=str(gan.checkpoint),
            images_seen=gan.images_seen,
            resolution=gan.resolution,
            renderer=_renderer(gan),
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

    if "geometry" in metrics:
        start = time.perf_counter()
        values = reconstruction_accuracy(args.reconstructions, args.data, args.num_points, args.seed)
        report["results"]["geometry"] = values | {
            "reconstructions": str(args.reconstructions),
            "seed": args.seed,
            "units": "chamfer: world units, L2 (not squared), mean of both directions; normal consistency: mean |cos|",
        }
        report["seconds"]["geometry"] = time.perf_counter() - start

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_strict_json(report), indent=2, default=str, allow_nan=False))
    return report


def _distribution(args: MetricsArgs, gan: TrainedGAN) -> dict:
    """Encoder FID, KID, precision and recall of ``args.distribution_fakes`` renders, with the protocol."""
    from wysiwyg_gan.data.dataset import CameraImageDataset
    from wysiwyg_gan.feature_encoder import load_or_train_encoder

    data = _real_dataset_path(args, gan)
    # Unmirrored: a mirrored copy would be its original's nearest neighbour and shrink the k-NN balls.
    reals = CameraImageDataset(data, resolution=gan.resolution)
    encoder = load_or_train_encoder(
        data, gan.resolution, args.encoder, args.encoder_mode, device=gan.device, log=lambda line: print(line, flush=True)
    )
    reals_features = real_features(encoder, reals, args.distribution_reals, args.seed, batch_size=max(args.batch, 64))
    seeds = list(range(args.seed, args.seed + args.distribution_fakes))
    render_labels = render_cameras(reals, len(seeds), args.seed)
    condition_labels = render_labels if args.fid_condition == "camera" else orbit_labels(FRONTAL, FRONTAL, len(seeds))
    values = generator_distribution(
        gan,
        encoder,
        reals_features,
        seeds,
        render_labels,
        condition_labels,
        args.truncation_psi,
        args.precision_recall_k,
        args.kid_subset_size,
        args.kid_subsets,
        args.seed,
        batch_size=args.batch,
    )
    values["frontal_view"]["render_cameras"] = (
        "the frontal camera for every latent: only the latents vary, so colour that changes with the view "
        "cannot pass for diversity"
    )
    return values | {
        "seeds": [seeds[0], seeds[-1]],
        "truncation_psi": args.truncation_psi,
        "real_set": str(data),
        "image_size": gan.resolution,
        "mirror": False,
        "render_cameras": f"uniform draws from the real set's {len(reals.labels)} labels (torch seed {args.seed})",
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
            "nfs": ("nfs",),
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
