"""Gaussian splat ``.ply`` files in the layout of the reference 3D Gaussian Splatting code.

One binary little-endian ``vertex`` element with float32 properties, in this order: ``x y z``,
``nx ny nz`` (zeros; viewers expect them), ``f_dc_0..2`` (degree-0 SH colour), ``f_rest_*``
(higher-degree SH, channel-major: every red coefficient, then green, then blue; none for degree
0), ``opacity`` (logit), ``scale_0..2`` (log) and ``rot_0..3`` (quaternion ``w, x, y, z``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wysiwyg_gan.splats.rasterizer import Gaussians


def _property_names(rest: int) -> list[str]:
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(rest)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def save_splat_ply(gaussians: Gaussians, path: str | Path) -> Path:
    """Write ``gaussians`` to ``path`` (parent folders created); returns the path."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = gaussians.detach().to("cpu")
    n = len(g)
    # (n, k-1, 3) -> (n, 3, k-1): the reference code stores the rest coefficients per channel.
    rest = g.sh[:, 1:].transpose(1, 2).reshape(n, -1)
    columns = torch.cat(
        [g.means, torch.zeros(n, 3), g.sh[:, 0], rest, g.opacity_logits[:, None], g.log_scales, g.quats], dim=1
    ).numpy().astype(np.float32)
    names = _property_names(rest.shape[1])
    vertices = np.empty(n, dtype=[(name, "f4") for name in names])
    for index, name in enumerate(names):
        vertices[name] = columns[:, index]
    PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(str(path))
    return path


def load_splat_ply(path: str | Path) -> Gaussians:
    """Read a splat ``.ply`` (this layout, SH degree 0 or 1); ``ValueError`` naming what is missing."""
    from plyfile import PlyData

    path = Path(path)
    data = PlyData.read(str(path))
    if "vertex" not in data:
        raise ValueError(f"path {path}: no 'vertex' element")
    vertex = data["vertex"]
    names = {prop.name for prop in vertex.properties}
    rest = sorted((name for name in names if name.startswith("f_rest_")), key=lambda name: int(name[7:]))
    if len(rest) not in (0, 9):
        raise ValueError(f"path {path}: {len(rest)} f_rest_* properties; only SH degree 0 (0) or 1 (9) is supported")
    missing = [name for name in _property_names(0) if name not in names and not name.startswith("n")]
    if missing:
        raise ValueError(f"path {path}: missing vertex properties {missing}")

    def stack(keys: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[key], dtype=np.float32) for key in keys], axis=1))

    n = len(vertex.data)
    dc = stack(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None]
    sh = dc if not rest else torch.cat([dc, stack(rest).reshape(n, 3, -1).transpose(1, 2)], dim=1)
    return Gaussians(
        means=stack(["x", "y", "z"]),
        log_scales=stack(["scale_0", "scale_1", "scale_2"]),
        quats=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacity_logits=stack(["opacity"])[:, 0],
        sh=sh.contiguous(),
    )
