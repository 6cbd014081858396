"""Meshes of signed distance fields: chunked marching cubes, vertex colours, export.

``extract_mesh`` samples an SDF (positive outside) on a ``resolution^3`` grid over the cube
``[-box_size/2, box_size/2]^3`` and runs marching cubes (``skimage.measure.marching_cubes``) on its
level set, one slab of grid planes at a time, so that a 1024^3 grid never holds 1024^3 values:
the peak is about ``(resolution + 2)^2 * (chunk_slices + 1)`` float32 values plus the mesh.

* The grid is padded with one layer of positive values outside the box, so a surface that the
  box cuts is closed by a flat cap on the box face: the mesh is watertight whenever the SDF is
  finite, and no vertex lies outside the box.
* Neighbouring slabs share one grid plane (evaluated once). Vertices are computed in grid-index
  space (edge vertices in float64 from the edge's two values, the integer slab start added
  exactly), so a vertex on the shared plane comes out bit-identical from both slabs; then vertices
  at exactly the same position are merged and faces that collapse are dropped. Any
  ``chunk_slices`` gives the same mesh as one slab: the same vertices and faces, positions
  bit-identical except Lewiner's rare cell-interior vertices (ambiguous cells), which skimage
  computes in float32 slab coordinates (differences of order 1e-7 cell).
* Faces are oriented outward: their normals point towards positive SDF.

``vertex_colors`` colours vertices with a field's colour MLP, seen from outside along the normal;
``save_mesh`` writes ``.ply`` or ``.obj`` with the colours.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from torch import Tensor

from learned_sampler.validation import check_positive_int
from wysiwyg_gan.images import unit_to_uint8

DEFAULT_CHUNK_SLICES = 32
"""Grid planes per marching-cubes slab (1024^3: about 140 MB of SDF values at a time)."""
DEFAULT_CHUNK_POINTS = 2**18
"""Points per SDF evaluation."""
OUTSIDE_CELLS = 1000.0
"""The padding outside the box is this many cell sizes above the level (only its sign matters:
vertices on edges into the padding are put on the box face)."""
MESH_FORMATS = (".ply", ".obj")


def _grid_coordinates(resolution: int, box_size: float, device: torch.device) -> Tensor:
    """World coordinates of the grid planes along one axis (float64 arithmetic, exact ends)."""
    index = torch.arange(resolution, dtype=torch.float64)
    return (-0.5 * box_size + box_size * index / (resolution - 1)).to(torch.float32).to(device)


@torch.no_grad()
def _evaluate_planes(
    sdf_fn: Callable[[Tensor], Tensor],
    volume: np.ndarray,
    first_plane: int,
    last_plane: int,
    first_slot: int,
    coordinates: Tensor,
    chunk_points: int,
) -> None:
    """Write the SDF on grid planes ``first_plane..last_plane`` (x indices) into ``volume`` slots
    ``first_slot...`` (the volume's y and z axes are padded by one cell on each side).

    Points go to ``sdf_fn`` in whole grid rows (along z), about ``chunk_points`` at a time."""
    resolution = coordinates.shape[0]
    rows_per_chunk = max(1, chunk_points // resolution)
    total_rows = (last_plane - first_plane + 1) * resolution
    for start in range(0, total_rows, rows_per_chunk):
        rows = np.arange(start, min(start + rows_per_chunk, total_rows))
        plane, row = rows // resolution, rows % resolution
        count = len(rows) * resolution
        points = torch.stack(
            [
                coordinates[torch.from_numpy(plane + first_plane).to(coordinates.device)][:, None].expand(-1, resolution),
                coordinates[torch.from_numpy(row).to(coordinates.device)][:, None].expand(-1, resolution),
                coordinates[None, :].expand(len(rows), -1),
            ],
            dim=-1,
        ).reshape(count, 3)
        values = sdf_fn(points)
        if not isinstance(values, Tensor) or values.numel() != count:
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"sdf_fn must return one value per point ({count},), got {shape}")
        values = values.detach().reshape(len(rows), resolution).to(device="cpu", dtype=torch.float32).numpy()
        if not np.isfinite(values).all():
            raise ValueError("the SDF has non-finite values (NaN or inf) inside the box")
        volume[plane + first_slot, row + 1, 1 : resolution + 1] = values


def _refine_vertices(vertices: np.ndarray, volume: np.ndarray, level: float, start: int, padded: int) -> np.ndarray:
    """Float64 padded-grid-index positions of the vertices of the slab starting at plane ``start``.

    skimage interpolates in float32 slab-local coordinates, whose rounding depends on where the slab
    starts. A vertex on a grid edge (one fractional coordinate) is recomputed here from the edge's
    two values in float64, with the slab offset added to the integer part first, so it does not
    depend on the slabs at all. A vertex on an edge into the padding is put on the box face (the
    cap of a surface the box cuts). Lewiner's few vertices inside a cell (three fractional
    coordinates, ambiguous cases; never in padding cells) are kept as skimage computed them.
    """
    positions = vertices.astype(np.float64)
    base = np.floor(positions)
    fractional = positions != base
    rows = np.nonzero(fractional.sum(axis=1) == 1)[0]
    positions[:, 0] += start  # exact for grid points and cell-interior vertices; edges recomputed below
    if len(rows) == 0:
        return positions
    axis = np.argmax(fractional[rows], axis=1)
    arange = np.arange(len(rows))
    low = base[rows].astype(np.int64)
    high = low.copy()
    high[arange, axis] += 1
    v0 = volume[low[:, 0], low[:, 1], low[:, 2]].astype(np.float64)
    v1 = volume[high[:, 0], high[:, 1], high[:, 2]].astype(np.float64)
    t = np.clip((level - v0) / (v1 - v0), 0.0, 1.0)
    low[:, 0] += start
    edge_start = low[arange, axis]
    position = edge_start + t
    position = np.where(edge_start == 0, 1.0, position)  # edge from the padding to the first grid plane
    position = np.where(edge_start == padded - 2, padded - 2.0, position)  # from the last plane outwards
    positions[rows, axis] = position
    return positions


def _merge_exact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices at bit-identical positions, drop collapsed faces and unused vertices."""
    if len(vertices) == 0:
        return vertices, faces
    unique, inverse = np.unique(vertices, axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    used = np.zeros(len(unique), dtype=bool)
    used[faces.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    return unique[used], remap[faces]


def extract_mesh(
    sdf_fn: Callable[[Tensor], Tensor],
    resolution: int,
    box_size: float,
    chunk_slices: int = DEFAULT_CHUNK_SLICES,
    level: float = 0.0,
    chunk_points: int = DEFAULT_CHUNK_POINTS,
    device: str | torch.device = "cpu",
) -> trimesh.Trimesh:
    """The ``level`` set of ``sdf_fn`` (positive outside) inside ``[-box_size/2, box_size/2]^3``.

    ``sdf_fn(points (N, 3) float32 on device) -> (N,)`` is called under ``torch.no_grad`` on at most
    ``chunk_points`` points at a time. The grid has ``resolution`` points per axis (the box's faces
    included, so the cell size is ``box_size / (resolution - 1)``). Marching cubes runs on slabs of
    ``chunk_slices + 1`` grid planes along x; the result does not depend on ``chunk_slices``.

    Outside the box the grid is padded with positive values, so a surface the box cuts is closed by
    flat caps on the box faces (watertight; all vertices in the box). Returns world-coordinate vertices
    and outward faces (normals towards positive SDF), unprocessed by trimesh (``process=False``).
    Raises ``ValueError`` for bad arguments, non-finite SDF values, or an empty level set.
    """
    resolution = check_positive_int("resolution", resolution, minimum=2)
    chunk_slices = check_positive_int("chunk_slices", chunk_slices)
    chunk_points = check_positive_int("chunk_points", chunk_points)
    box_size = float(box_size)
    level = float(level)
    if not np.isfinite(box_size) or box_size <= 0:
        raise ValueError(f"box_size must be a positive number, got {box_size}")
    if not np.isfinite(level):
        raise ValueError(f"level must be finite, got {level}")
    device = torch.device(device)
    cell = box_size / (resolution - 1)
    outside = np.float32(level + OUTSIDE_CELLS * cell)
    coordinates = _grid_coordinates(resolution, box_size, device)

    from skimage.measure import marching_cubes

    padded = resolution + 2  # padded plane p holds grid plane p - 1; planes 0 and padded - 1 are padding
    vertex_parts: list[np.ndarray] = []
    face_parts: list[np.ndarray] = []
    vertex_count = 0
    minimum = np.inf
    shared: np.ndarray | None = None
    start = 0
    while start < padded - 1:
        stop = min(start + chunk_slices, padded - 1)  # the slab holds padded planes start..stop
        volume = np.full((stop - start + 1, padded, padded), outside, dtype=np.float32)
        if shared is not None:
            volume[0] = shared
        first_new = start + 1 if shared is not None else start
        first_grid, last_grid = max(first_new, 1) - 1, min(stop, resolution) - 1
        if first_grid <= last_grid:
            _evaluate_planes(sdf_fn, volume, first_grid, last_grid, first_grid + 1 - start, coordinates, chunk_points)
        shared = volume[-1].copy()
        slab_minimum = float(volume.min())
        minimum = min(minimum, slab_minimum)
        if slab_minimum < level:
            # skimage's 'descent' orders the faces so that their normals point to increasing values
            # (checked on spheres in the tests): outward for an SDF that is positive outside.
            vertices, faces, _, _ = marching_cubes(volume, level, gradient_direction="descent")
            vertices = _refine_vertices(vertices, volume, level, start, padded)
            vertex_parts.append(vertices)
            face_parts.append(faces.astype(np.int64) + vertex_count)
            vertex_count += len(vertices)
        del volume
        start = stop
    if not vertex_parts:
        raise ValueError(
            f"the SDF has no {'zero' if level == 0 else f'{level:g}'} level set inside the box (its minimum on "
            f"the {resolution}^3 grid is {minimum:.4g}): empty mesh"
        )
    vertices, faces = _merge_exact(np.concatenate(vertex_parts), np.concatenate(face_parts))
    vertex_parts.clear()
    face_parts.clear()
    if len(faces) == 0:
        raise ValueError("the SDF's level set inside the box is degenerate (no face of non-zero size): empty mesh")
    world = (vertices - 1.0) * cell - 0.5 * box_size
    return trimesh.Trimesh(vertices=world, faces=faces, process=False)


def largest_piece(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, int]:
    """The connected piece of ``mesh`` with the largest surface area, and how many pieces it had
    (stray surfaces, e.g. near the box faces outside every camera's view, are small)."""
    pieces = mesh.split(only_watertight=False)
    if len(pieces) <= 1:
        return mesh, len(pieces)
    return max(pieces, key=lambda piece: piece.area), len(pieces)


def _as_float_tensor(name: str, value: np.ndarray | Tensor, rows: int) -> Tensor:
    tensor = torch.as_tensor(value if isinstance(value, Tensor) else np.asarray(value, dtype=np.float32))
    shape = tuple(tensor.shape)
    if tensor.dim() == 1:
        tensor = tensor[None]
    if tensor.dim() != 2 or tensor.shape[1] != 3 or tensor.shape[0] not in (1, rows):
        raise ValueError(f"{name} must have shape ({rows}, 3) or (3,), got {shape}")
    return tensor.float().expand(rows, 3)


@torch.no_grad()
def vertex_colors(
    field,
    vertices: np.ndarray | Tensor,
    normals: np.ndarray | Tensor | None = None,
    directions: np.ndarray | Tensor | None = None,
    chunk_points: int = 2**16,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """RGB ``(V, 3)`` uint8 of ``vertices`` from the colour MLP of ``field``, a field of one latent.

    ``field(positions (1, N, 3), directions (1, N, 3))`` must return ``{"rgb": (1, N, 3) in [0, 1]}``
    (``TriplaneField`` does). By default each vertex is seen from outside along its normal (view
    direction = -normal); ``normals`` default to the field's SDF gradients (``field.normals``), or
    pass them (e.g. ``mesh.vertex_normals``). ``directions`` ((V, 3) or one (3,) for all: the
    direction a ray travels to reach the vertex, e.g. from a camera) replaces -normal. Evaluated in
    chunks of ``chunk_points``; ``device`` defaults to that of the field's planes.
    """
    chunk_points = check_positive_int("chunk_points", chunk_points)
    if device is None:
        planes = getattr(field, "planes", None)
        device = planes.device if isinstance(planes, Tensor) else torch.device("cpu")
    points = torch.as_tensor(vertices if isinstance(vertices, Tensor) else np.asarray(vertices, dtype=np.float32))
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {tuple(points.shape)}")
    count = points.shape[0]
    if directions is not None:
        directions = _as_float_tensor("directions", directions, count)
    elif normals is not None:
        directions = -_as_float_tensor("normals", normals, count)
    elif not hasattr(field, "normals"):
        raise ValueError("the field has no normals(points) method: pass normals or directions")
    colours = np.empty((count, 3), dtype=np.uint8)
    for start in range(0, count, chunk_points):
        chunk = points[start : start + chunk_points].to(device=device, dtype=torch.float32)[None]
        if directions is None:
            view = -field.normals(chunk)
        else:
            view = F.normalize(directions[start : start + chunk_points].to(device), dim=-1)[None]
        rgb = field(chunk, view)["rgb"][0]
        colours[start : start + chunk.shape[1]] = unit_to_uint8(rgb).cpu().numpy()
    return colours


def save_mesh(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write ``mesh`` as ``.ply`` (binary) or ``.obj`` by ``path``'s suffix; vertex colours are kept.

    PLY stores colours as uchar ``red green blue alpha`` vertex properties. OBJ has no standard for
    them: trimesh writes the common ``v x y z r g b`` extension (colours as floats in [0, 1]), which
    trimesh, MeshLab and Blender read back. Vertex normals are not written (viewers recompute them).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_FORMATS:
        raise ValueError(f"mesh path {path} must end in .ply or .obj, got {path.suffix or 'no suffix'!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".ply":
        data = mesh.export(file_type="ply", encoding="binary")
    else:
        data = mesh.export(file_type="obj", include_normals=False, include_color=True, include_texture=False)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path
