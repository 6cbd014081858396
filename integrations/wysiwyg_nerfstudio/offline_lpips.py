"""LPIPS only when its weights are already on disk (no download at run time).

torchmetrics' LPIPS (AlexNet) loads torchvision's ImageNet AlexNet weights from torch's hub cache
and downloads them when they are missing; offline that is a ``URLError`` while the model is being
built. LPIPS is only an evaluation metric, so ``lpips_if_available`` builds it when the weights
file is in the cache and otherwise returns ``None`` after logging one message; the model then
reports PSNR and SSIM alone. The weights are never faked.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from nerfstudio.utils.rich_utils import CONSOLE

_warned = False


def alexnet_weights_path() -> Path:
    """Where torchvision keeps the ImageNet AlexNet weights that LPIPS needs."""
    from torchvision.models import AlexNet_Weights

    filename = os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def lpips_if_available() -> nn.Module | None:
    """torchmetrics' LPIPS (normalised inputs in [0, 1]) if its weights are cached, else ``None``."""
    global _warned
    path = alexnet_weights_path()
    if not path.is_file():
        if not _warned:
            CONSOLE.print(
                f"[yellow]LPIPS skipped: its AlexNet weights are not in torch's hub cache ({path}). "
                "Put the file there (or run once with internet access) to report LPIPS.[/yellow]"
            )
            _warned = True
        return None
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    return LearnedPerceptualImagePatchSimilarity(normalize=True)
