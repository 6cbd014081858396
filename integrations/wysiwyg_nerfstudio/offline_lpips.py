"""LPIPS only when its weights are already on disk (no download at run time).

torchmetrics' LPIPS (AlexNet) loads torchvision's ImageNet AlexNet weights from torch's hub cache
and downloads them when they are missing; offline that is a ``URLError`` while the model is being
built. LPIPS is only an evaluation metric, so ``lpips_if_available`` builds it when the weights
file is in the cache and otherwise returns ``None`` after logging one message; the model then
reports PSNR and SSIM alone. The weights are never faked.
"""

from __future__ import annotations

from torch import nn

from learned_sampler import hub_checkpoint_path
from nerfstudio.utils.rich_utils import CONSOLE

_warned = False


def lpips_if_available() -> nn.Module | None:
    """torchmetrics' LPIPS (normalised inputs in [0, 1]) if its weights are cached, else ``None``."""
    global _warned
    from torchvision.models import AlexNet_Weights

    path = hub_checkpoint_path(AlexNet_Weights.IMAGENET1K_V1.url)
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
