"""Rendered colours and depths to images, one rule for every file, grid and metric.

Colours in [0, 1] map to ``floor(255 x + 0.5)``, clamped; images in [-1, 1] (the generator's and
the datasets' range) first go to [0, 1], which gives StyleGAN's ``x * 127.5 + 128``. Depth maps
show near surfaces bright and the background black (``depth_to_unit``).
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float, UInt8
from torch import Tensor


def unit_to_uint8(colours: Float[Tensor, "*shape"]) -> UInt8[Tensor, "*shape"]:
    """Colours in [0, 1] (any layout) as uint8, rounded to the nearest level."""
    return (colours.detach().float() * 255.0 + 0.5).clamp(0.0, 255.0).to(torch.uint8)


def images_to_uint8(images: Float[Tensor, "*batch 3 height width"]) -> UInt8[Tensor, "*batch 3 height width"]:
    """Images in [-1, 1] as uint8, as StyleGAN saves them."""
    return unit_to_uint8((images + 1.0) / 2.0)


def to_hwc_uint8(image: Float[Tensor, "channels height width"]) -> UInt8[np.ndarray, "height width channels"]:
    """A ``(C, H, W)`` image in [0, 1] as an ``(H, W, C)`` uint8 array, ready for an image file."""
    return unit_to_uint8(image).permute(1, 2, 0).cpu().numpy()


def depth_to_unit(
    depth: Float[Tensor, "*shape"], opacity: Float[Tensor, "*shape"], near: float, far: float
) -> Float[Tensor, "*shape"]:
    """Depth as brightness in [0, 1]: ``(far - depth) / (far - near)`` times the opacity, so near
    surfaces are bright and the far plane and the background are 0."""
    return ((far - depth) / (far - near)).clamp(0.0, 1.0) * opacity
