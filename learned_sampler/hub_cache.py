"""Where torch's hub cache keeps a downloaded checkpoint, for code that must not download.

Pretrained weights (LPIPS's backbones, FID's Inception network) are fetched once by
``torch.hub.load_state_dict_from_url`` into ``<torch.hub.get_dir()>/checkpoints``. Code that must
run offline looks for the file there first, and says what is missing instead of failing halfway
through a download.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch


def hub_checkpoint_path(url: str) -> Path:
    """The file that ``torch.hub.load_state_dict_from_url(url)`` downloads to and loads from.

    ``<torch.hub.get_dir()>/checkpoints/<the file name in the URL's path>``, so ``$TORCH_HOME``
    applies; the file need not exist.

    Example:
        >>> hub_checkpoint_path("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth").name
        'alexnet-owt-7be5be79.pth'
    """
    if not isinstance(url, str):
        raise ValueError(f"url must be a string, got {type(url).__name__}")
    filename = os.path.basename(urlparse(url).path)  # torch.hub's own rule
    if not filename:
        raise ValueError(f"url must end in a file name, got {url!r}")
    return Path(torch.hub.get_dir()) / "checkpoints" / filename
