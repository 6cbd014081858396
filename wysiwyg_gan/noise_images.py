"""The generator's constant noise images as optimisable variables (StyleGAN2's projector).

An inversion may fit the noise images with the latent; ``noise_regularization`` and
``normalize_noise`` keep them noise-like so they cannot absorb the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wysiwyg_gan.networks.layers import NoiseInjection


def noise_modules(generator: nn.Module) -> list[NoiseInjection]:
    """Every noise injection of ``generator``, in module order."""
    return [module for module in generator.modules() if isinstance(module, NoiseInjection)]


def make_noise_trainable(generator: nn.Module) -> list[Tensor]:
    """Replace every ``noise_const`` buffer by a trainable leaf copy (still a buffer) and return them."""
    leaves = []
    for module in noise_modules(generator):
        leaf = module.noise_const.detach().clone().requires_grad_(True)
        module.noise_const = leaf  # assigning to a registered buffer name keeps it a buffer
        leaves.append(leaf)
    return leaves


def freeze_noise(generator: nn.Module) -> None:
    """Turn the ``noise_const`` buffers back into plain tensors without gradients."""
    for module in noise_modules(generator):
        module.noise_const = module.noise_const.detach().clone()


def noise_regularization(noises: Sequence[Tensor]) -> Tensor:
    """Autocorrelation penalty of noise images (StyleGAN2 projector): at every scale down to 8x8
    (2x2 average pooling between scales), ``mean(n * roll_x(n))^2 + mean(n * roll_y(n))^2``."""
    total = noises[0].new_zeros(()) if noises else torch.zeros(())
    for noise in noises:
        current = noise[None, None]
        while True:
            total = total + (current * current.roll(1, dims=3)).mean().square()
            total = total + (current * current.roll(1, dims=2)).mean().square()
            if current.shape[-1] <= 8:
                break
            current = F.avg_pool2d(current, 2)
    return total


@torch.no_grad()
def normalize_noise(noises: Sequence[Tensor]) -> None:
    """Renormalise noise images in place to zero mean and unit variance."""
    for noise in noises:
        noise -= noise.mean()
        noise *= noise.square().mean().clamp_min(1e-12).rsqrt()

