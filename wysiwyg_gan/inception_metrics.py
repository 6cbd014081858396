"""FID and KID in Inception's feature space, through torch-fidelity, as EG3D reports them.

The Inception weights are torch-fidelity's ``pt_inception-2015-12-05``: downloaded into torch's
hub cache on first use, or read from a local file (``inception_weights_path``), with a clear error
when neither works (an offline machine).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, UInt8
from torch import Tensor
from torch.utils.data import Dataset

from learned_sampler import hub_checkpoint_path
from wysiwyg_gan.images import images_to_uint8
from wysiwyg_gan.inference import render_seeds
from wysiwyg_gan.orbit_cameras import FRONTAL, orbit_labels

if TYPE_CHECKING:
    from wysiwyg_gan.inference import TrainedGAN


class InceptionWeightsError(RuntimeError):
    """The Inception weights for FID/KID are neither given nor downloadable."""


class _UInt8Images(Dataset):
    """Images as uint8 ``(3, H, W)`` tensors, the input torch-fidelity expects: from a tensor or a
    ``CameraImageDataset`` (its [-1, 1] floats are rounded back to bytes)."""

    def __init__(self, source: Tensor | Dataset):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Tensor:
        item = self.source[index]
        if isinstance(item, tuple):
            item = item[0]
        if item.dtype != torch.uint8:
            item = images_to_uint8(item)
        return item


def _generated_images_class():
    from torch_fidelity import GenerativeModelBase

    class GeneratedImages(GenerativeModelBase):
        """A generator as torch-fidelity's generative-model input: batch ``k`` renders the next seeds
        of ``seeds`` (torch-fidelity's own noise is ignored), so images stream without being stored."""

        def __init__(self, gan, seeds, render_labels, condition_labels, truncation_psi, resolution):
            super().__init__()
            self._gan = [gan]  # not a submodule: torch-fidelity's .cuda() must not move the generator
            self.seeds = list(seeds)
            self.render_labels = render_labels
            self.condition_labels = condition_labels
            self.truncation_psi = truncation_psi
            self.resolution = resolution
            self.position = 0
            self.samples_per_ray: list[float] = []

        @property
        def z_size(self) -> int:
            return 1

        @property
        def z_type(self) -> str:
            return "normal"

        @property
        def num_classes(self) -> int:
            return 0

        def __len__(self) -> int:
            return len(self.seeds)

        @torch.no_grad()
        def forward(self, noise: Tensor) -> Tensor:
            gan = self._gan[0]
            start, stop = self.position, self.position + noise.shape[0]
            if stop > len(self.seeds):
                raise RuntimeError("torch-fidelity asked for more images than seeds")
            self.position = stop
            images = render_seeds(
                gan,
                self.seeds[start:stop],
                self.render_labels[start:stop],
                self.condition_labels[start:stop],
                self.truncation_psi,
                self.resolution,
            )
            self.samples_per_ray.append(images.samples_per_ray)
            return images_to_uint8(images.image).to(noise.device)

    return GeneratedImages


def generated_images(
    gan: TrainedGAN,
    seeds: Sequence[int],
    render_labels: Float[Tensor, "num_seeds 25"],
    condition_labels: Float[Tensor, "num_seeds 25"] | None = None,
    truncation_psi: float = 1.0,
    resolution: int | None = None,
):
    """The images of ``seeds`` rendered from ``render_labels`` (one per seed) as a torch-fidelity
    generative-model input for ``fid_kid``; latents are conditioned on ``condition_labels``
    (default: the frontal camera). Rendered lazily, a torch-fidelity batch at a time, once."""
    if render_labels.shape != (len(seeds), 25):
        raise ValueError(f"render_labels must have shape ({len(seeds)}, 25), got {tuple(render_labels.shape)}")
    if condition_labels is None:
        condition_labels = orbit_labels(FRONTAL, FRONTAL, len(seeds))
    return _generated_images_class()(gan, seeds, render_labels, condition_labels, truncation_psi, resolution or gan.resolution)


def inception_weights_path(path: str | os.PathLike | None = None) -> Path:
    """A local file of the Inception weights torch-fidelity's FID/KID use (``pt_inception-2015-12-05``).

    ``path`` when given (it must exist); else the file in torch's hub cache
    (``$TORCH_HOME/hub/checkpoints``), downloaded there first if missing. Raises
    ``InceptionWeightsError`` with instructions when neither works (offline).
    """
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InceptionWeightsError(f"--inception-weights {path}: no such file")
        return path
    target = hub_checkpoint_path(URL_INCEPTION_V3)
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(target), progress=False)
    except Exception as error:  # noqa: BLE001 - URLError, HTTPError, timeouts, SSL and OS errors alike
        raise InceptionWeightsError(
            f"FID/KID need torch-fidelity's Inception weights and the download failed "
            f"({type(error).__name__}: {error}). Offline, pass --inception-weights PATH with the file "
            f"{target.name} (get it from {URL_INCEPTION_V3}, or copy it from a machine where torch-fidelity "
            f"downloaded it into its torch hub cache, ~/.cache/torch/hub/checkpoints)"
        ) from error
    return target


def _count(images) -> int:
    if isinstance(images, (str, Path)):
        folder = Path(images)
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder of images")
        return sum(1 for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return len(images)


def fid_kid(
    fakes: UInt8[Tensor, "num_fakes 3 height width"] | Dataset | str | Path,
    reals: UInt8[Tensor, "num_reals 3 height width"] | Dataset | str | Path,
    inception_weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    fid: bool = True,
    kid: bool = True,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
    batch_size: int = 64,
) -> dict:
    """FID and KID between two image sets with torch-fidelity's Inception (upsampled to 299 px inside).

    Each set is a uint8 ``(N, 3, H, W)`` tensor, a Dataset of uint8 ``(3, H, W)`` tensors (or of
    ``CameraImageDataset`` items), a folder of PNG/JPEG files, or ``generated_images(...)``.
    ``kid_subset_size`` is lowered to the smaller set's size when needed (reported back). KID's
    subsets are drawn with ``seed``: the numbers are deterministic. Raises
    ``InceptionWeightsError`` when no weights are available (see ``inception_weights_path``).
    """
    import torch_fidelity

    if not (fid or kid):
        raise ValueError("ask for fid, kid or both")
    weights = inception_weights_path(inception_weights)
    device = torch.device(device)
    inputs = []
    for images in (fakes, reals):
        if isinstance(images, Tensor):
            if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"image tensors must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
            images = _UInt8Images(images.cpu())
        elif isinstance(images, Path):
            images = str(images)
        elif isinstance(images, Dataset) and not isinstance(images, torch.nn.Module):
            images = _UInt8Images(images)
        inputs.append(images)
    counts = [_count(images) for images in inputs]
    if min(counts) < 2:
        raise ValueError(f"FID/KID need at least 2 images per set, got {counts[0]} fakes and {counts[1]} reals")
    subset = min(kid_subset_size, *counts)
    kwargs = dict(
        input1=inputs[0],
        input2=inputs[1],
        input1_model_num_samples=counts[0],
        cuda=device.type == "cuda",
        fid=fid,
        kid=kid,
        kid_subset_size=subset,
        kid_subsets=kid_subsets,
        rng_seed=seed,
        batch_size=batch_size,
        feature_extractor_weights_path=str(weights),
        cache=False,
        verbose=False,
        save_cpu_ram=True,  # no DataLoader worker processes
    )
    values = torch_fidelity.calculate_metrics(**kwargs)
    result: dict = {"num_fakes": counts[0], "num_reals": counts[1], "inception_weights": str(weights)}
    if fid:
        result["fid"] = float(values["frechet_inception_distance"])
    if kid:
        result.update(
            kid=float(values["kernel_inception_distance_mean"]),
            kid_std=float(values["kernel_inception_distance_std"]),
            kid_subset_size=subset,
            kid_subsets=kid_subsets,
        )
    return result

