"""Export generated objects as 3D Gaussian splats (``python -m wysiwyg_gan.generate --splats N``).

``rasterizer``: the ``Gaussians`` container, gsplat's CUDA rasterizer (imported only when used on
CUDA) and the pure-torch twin; ``fitting``: initialise splats on the surface the generator renders
and optimise them against its renders; ``ply``: read and write the reference 3DGS ``.ply`` layout.
"""

from wysiwyg_gan.splats.fitting import SplatFit, SplatFitConfig, fit_splats
from wysiwyg_gan.splats.ply import load_splat_ply, save_splat_ply
from wysiwyg_gan.splats.rasterizer import Gaussians, rasterize, rasterize_torch

__all__ = [
    "Gaussians",
    "SplatFit",
    "SplatFitConfig",
    "fit_splats",
    "load_splat_ply",
    "rasterize",
    "rasterize_torch",
    "save_splat_ply",
]
