"""A camera label refined by gradient descent, and orbits around a label.

``CameraPose`` is the camera that ``wysiwyg_gan.invert`` optimises beside the latent: a rotation
about the world origin (where the objects are centred) and a translation along the camera's own
axes, both starting at zero. ``novel_view_labels`` turns a label about the world's up axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from wysiwyg_gan.data.dataset import LABEL_SIZE, camera_labels, split_camera_labels


def _skew(vector: Tensor) -> Tensor:
    zero = vector.new_zeros(())
    x, y, z = vector.unbind(-1)
    return torch.stack([torch.stack([zero, -z, y]), torch.stack([z, zero, -x]), torch.stack([-y, x, zero])])


def rotation_matrix(axis_angle: Tensor) -> Tensor:
    """The rotation ``exp([r]_x)`` of an axis-angle 3-vector (differentiable, also at zero)."""
    return torch.linalg.matrix_exp(_skew(axis_angle))


def yaw_matrix(angle: float, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
    """``4 x 4`` rotation by ``angle`` radians about the world y axis (up) through the origin."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s, 0.0], [0.0, 1.0, 0.0, 0.0], [-s, 0.0, c, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=dtype, device=device)


class CameraPose(nn.Module):
    """A camera label refined by a rotation about the world origin and a translation.

    ``cam2world = [R(r) 0; 0 1] @ C0 @ [I t; 0 1]``: ``r`` an axis-angle 3-vector (an orbit of the
    camera around the origin, which the objects are centred on, plus a roll) and ``t`` a
    translation along the camera's own axes (x right, y down, z forward: ``t_z`` moves towards the
    object). Both start at zero, so the initial label is ``C0``'s; the intrinsics stay fixed.
    """

    def __init__(self, label: Tensor, translation: bool = True):
        super().__init__()
        if label.shape != (LABEL_SIZE,):
            raise ValueError(f"label must have shape ({LABEL_SIZE},), got {tuple(label.shape)}")
        cam2world, intrinsics = split_camera_labels(label.detach().float())
        self.register_buffer("base_cam2world", cam2world.clone())
        self.register_buffer("intrinsics", intrinsics.clone())
        self.rotation = nn.Parameter(torch.zeros(3))
        self.translation = nn.Parameter(torch.zeros(3), requires_grad=translation)

    def cam2world(self) -> Tensor:
        """The refined ``4 x 4`` OpenCV cam2world matrix."""
        base = self.base_cam2world
        rotated = rotation_matrix(self.rotation) @ base[:3]  # rotate axes and position about the origin
        position = rotated[:, 3] + rotated[:, :3] @ self.translation
        top = torch.cat([rotated[:, :3], position[:, None]], dim=1)
        return torch.cat([top, base[3:]], dim=0)

    def forward(self) -> Tensor:
        """The refined label ``(1, 25)``."""
        return camera_labels(self.cam2world(), self.intrinsics)[None]


def novel_view_labels(label: Tensor, yaw_offsets: Sequence[float]) -> Tensor:
    """``(len(yaw_offsets), 25)`` labels: ``label``'s camera orbited about the world y axis."""
    cam2world, intrinsics = split_camera_labels(label.reshape(LABEL_SIZE))
    rows = [camera_labels(yaw_matrix(angle, cam2world.dtype, cam2world.device) @ cam2world, intrinsics) for angle in yaw_offsets]
    return torch.stack(rows)

