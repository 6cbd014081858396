"""LPIPS as a differentiable loss, only when its weights are already on disk (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from learned_sampler import hub_checkpoint_path

LPIPS_MIN_SIZE, LPIPS_MAX_SIZE = 64, 256
"""LPIPS sees images resized into this range (bilinear up, area down): AlexNet's and VGG's pooling
needs at least 64 pixels; above 256 the loss costs more than it adds (as PTI, which downsamples
to 256)."""

PerceptualLoss = Callable[[Tensor, Tensor], Tensor]
"""``loss(images, targets)``: a scalar, both ``(B, 3, H, W)`` in ``[-1, 1]``."""


def load_lpips(device: torch.device) -> tuple[PerceptualLoss | None, str]:
    """LPIPS as a differentiable loss when its backbone weights are already in torch's hub cache.

    Tries VGG16 (PTI's choice), then AlexNet; the linear-layer weights come with the ``lpips``
    package when installed, else with torchmetrics. Nothing is downloaded. Returns ``(loss,
    description)``, or ``(None, why not)``.
    """
    try:
        from torchvision.models import AlexNet_Weights, VGG16_Weights
    except ImportError:
        return None, "torchvision is not installed"
    searched = []
    for net, weights in (("vgg", VGG16_Weights.IMAGENET1K_V1), ("alex", AlexNet_Weights.IMAGENET1K_V1)):
        path = hub_checkpoint_path(weights.url)
        if not path.is_file():
            searched.append(str(path))
            continue
        try:
            try:
                import lpips

                model, source = lpips.LPIPS(net=net, verbose=False), "lpips package"
            except ImportError:
                from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

                model, source = LearnedPerceptualImagePatchSimilarity(net_type=net).net, "torchmetrics"
        except Exception as error:  # noqa: BLE001 - a broken install or cache means: no LPIPS
            searched.append(f"{path} (unusable: {error})")
            continue
        model = model.to(device).eval().requires_grad_(False)

        def loss(images: Tensor, targets: Tensor, model: nn.Module = model) -> Tensor:
            size = min(max(images.shape[-1], LPIPS_MIN_SIZE), LPIPS_MAX_SIZE)
            if size != images.shape[-1]:
                mode = "bilinear" if size > images.shape[-1] else "area"
                kwargs = {"align_corners": False} if mode == "bilinear" else {}
                images = F.interpolate(images, size=(size, size), mode=mode, **kwargs)
                targets = F.interpolate(targets, size=(size, size), mode=mode, **kwargs)
            return model(images, targets).mean()

        return loss, f"LPIPS {net} ({source}, weights {path})"
    return None, f"no LPIPS backbone weights in torch's hub cache ({', '.join(searched)})"

