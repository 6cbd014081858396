"""Accuracy of reconstructed 3D shapes against the truth: chamfer distance and normal consistency.

``geometry_accuracy`` compares two point clouds with normals, ``mesh_accuracy`` a mesh with a
synthetic dataset's analytic shape, and ``reconstruction_accuracy`` every mesh of a folder written
by ``python -m wysiwyg_gan.invert`` with its image's shape. Point-cloud distances run on CPU
k-d trees (scipy) when available, else in chunked torch.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from learned_sampler.validation import check_finite, check_floating, check_last_dims, check_positive_int

if TYPE_CHECKING:
    import trimesh

    from wysiwyg_gan.data.shapes import ShapeSpec


class ReconstructionError(ValueError):
    """A reconstructions folder (``invert.json`` and meshes) is missing or malformed."""


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
    ``n * m`` distances (slow on a CPU for large clouds, quick on a GPU). ``kdtree`` uses SciPy's
    ``cKDTree`` on the CPU, far faster there. ``auto`` picks the KD-tree for CPU tensors when SciPy
    is installed, else the chunked search. Either way the distances of the chosen neighbours are
    recomputed directly, so identical points give exactly 0 (the matrix-product form of cdist loses
    precision to cancellation).
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
    the object's surface (``wysiwyg_gan.data.shapes.sample_surface_points``, exact normals); both
    are compared by ``geometry_accuracy``. The mesh must be in the world coordinates of the
    dataset's cameras (where ``spec`` lives). Deterministic for a seed.
    """
    from wysiwyg_gan.data.shapes import sample_surface_points

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

