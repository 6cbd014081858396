"""Posed image datasets in EG3D's ``dataset.json`` format: validation, loading, mirroring, writing.

A dataset is a folder, or a ``.zip`` of one, holding images and a ``dataset.json`` at its root::

    {"labels": [["img00000000.png", [25 numbers]], ...]}

Each label is a camera: the 16 numbers of the 4x4 OpenCV cam2world matrix (row-major), then the
9 numbers of the 3x3 intrinsics normalised by the image size (``learned_sampler.rays``
conventions). Images are square, all of one size; only the labelled files are part of the dataset.
"""

from __future__ import annotations

import io
import json
import math
import operator
import os
import shutil
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

DATASET_JSON = "dataset.json"
"""Name of the label file at the root of a dataset."""
LABEL_SIZE = 25
"""Numbers per camera label: 16 of the cam2world matrix, then 9 of the normalised intrinsics."""
CACHE_LIMIT_BYTES = 256 * 2**20
"""``CameraImageDataset`` keeps decoded images in memory when they all fit in this many bytes."""


class DatasetError(ValueError):
    """A dataset on disk is unusable; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class DatasetInfo:
    """What ``validate_dataset`` learnt about a valid dataset."""

    path: Path
    """The dataset folder or zip."""
    num_images: int
    """Number of labelled images."""
    resolution: int
    """Side of the (square) images, in pixels."""
    names: tuple[str, ...]
    """Image file names relative to the dataset root, in label order."""
    labels: np.ndarray
    """Camera labels ``(num_images, 25)``, float32, in the order of ``names``."""


class _Source:
    """Read-only access to the files of a dataset folder or zip.

    A zip is opened lazily and reopened in every process: a ``ZipFile`` shares its file offset with
    forked copies, so DataLoader workers reading through one inherited handle would corrupt each
    other's reads. The handle is also dropped when pickled (spawned workers).
    """

    def __init__(self, path: Path):
        if not path.exists():
            raise DatasetError(f"{path}: no such file or folder")
        self.path = path
        self.is_zip = not path.is_dir()
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = -1
        if self.is_zip:
            if not (path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path))):
                raise DatasetError(f"{path}: not a dataset folder or .zip file")
            self._members = frozenset(self._archive().namelist())

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as error:
                raise DatasetError(f"{self.path}: corrupt or unreadable zip file ({error})") from error
            self._zip_pid = os.getpid()
        return self._zip

    def describe(self, name: str) -> str:
        """How error messages name the file ``name`` of the dataset."""
        return f"{self.path}:{name}" if self.is_zip else str(self.path / name)

    def exists(self, name: str) -> bool:
        return name in self._members if self.is_zip else (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        try:
            if self.is_zip:
                return self._archive().read(name)
            return (self.path / name).read_bytes()
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
            raise DatasetError(f"{self.describe(name)}: unreadable ({error})") from error

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None, "_zip_pid": -1}


def _check_name(name: object, where: str) -> str:
    """A label's file name must be a relative path inside the dataset."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"{where}: the file name must be a non-empty string, got {name!r}")
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or Path(name).is_absolute():
        raise DatasetError(f"{where}: file name {name!r} points outside the dataset")
    return name


def _parse_labels(source: _Source) -> tuple[tuple[str, ...], np.ndarray]:
    where = source.describe(DATASET_JSON)
    if not source.exists(DATASET_JSON):
        raise DatasetError(f"{where}: missing; a dataset needs a {DATASET_JSON} at its root")
    try:
        content = json.loads(source.read(DATASET_JSON))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{where}: malformed JSON ({error})") from error
    if not isinstance(content, dict) or "labels" not in content:
        raise DatasetError(f'{where}: expected an object with a "labels" list')
    entries = content["labels"]
    if not isinstance(entries, list):
        raise DatasetError(f'{where}: "labels" must be a list of [file name, 25 numbers], got {type(entries).__name__}')
    if not entries:
        raise DatasetError(f"{where}: no images (the labels list is empty)")
    names: list[str] = []
    labels = np.empty((len(entries), LABEL_SIZE), dtype=np.float64)
    for index, entry in enumerate(entries):
        entry_where = f"{where}: label {index}"
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
            raise DatasetError(f"{entry_where} must be [file name, [25 numbers]], got {entry!r:.100}")
        name = _check_name(entry[0], entry_where)
        values = entry[1]
        if len(values) != LABEL_SIZE:
            raise DatasetError(f"{entry_where} ({name}) has {len(values)} numbers, expected {LABEL_SIZE}")
        if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
            raise DatasetError(f"{entry_where} ({name}) holds a value that is not a number")
        if not all(math.isfinite(value) for value in values):
            raise DatasetError(f"{entry_where} ({name}) holds a non-finite number (NaN or infinity)")
        names.append(name)
        labels[index] = values
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise DatasetError(f"{where}: image {duplicate!r} is labelled more than once")
    return tuple(names), labels.astype(np.float32)


def _open_image(source: _Source, name: str) -> Image.Image:
    if not source.exists(name):
        raise DatasetError(f"{source.describe(name)}: labelled image file is missing")
    data = source.read(name)
    try:
        return Image.open(io.BytesIO(data))
    except (OSError, SyntaxError, ValueError) as error:  # includes PIL's UnidentifiedImageError
        raise DatasetError(f"{source.describe(name)}: not a readable image ({error})") from error


def _image_size(source: _Source, name: str) -> tuple[int, int]:
    """Width and height of an image, after checking its integrity without decoding its pixels."""
    image = _open_image(source, name)
    size = image.size
    try:
        image.verify()  # checks the structure and checksums (PNG CRCs) without decompressing
    except Exception as error:  # noqa: BLE001 - PIL reports corrupt files with many exception types
        raise DatasetError(f"{source.describe(name)}: corrupt image ({error})") from error
    return size


def validate_dataset(path: str | os.PathLike) -> DatasetInfo:
    """Check a dataset folder or zip and describe it; raise ``DatasetError`` naming the problem.

    Reads ``dataset.json`` and the header and integrity of every labelled image (not its pixels):
    every image must exist, be readable, be square, and have the size of the others.
    """
    source = _Source(Path(path))
    names, labels = _parse_labels(source)
    first_size = None
    for name in names:
        width, height = _image_size(source, name)
        if width != height:
            raise DatasetError(f"{source.describe(name)}: image is {width}x{height}; images must be square")
        if first_size is None:
            first_size = width
        elif width != first_size:
            raise DatasetError(
                f"{source.describe(name)}: image is {width}x{height} but {names[0]} is "
                f"{first_size}x{first_size}; all images must have the same size"
            )
    return DatasetInfo(path=source.path, num_images=len(names), resolution=first_size, names=names, labels=labels)


def camera_labels(
    cam2world: Float[Tensor, "*batch 4 4"], intrinsics: Float[Tensor, "*batch 3 3"]
) -> Float[Tensor, "*batch 25"]:
    """EG3D camera labels from OpenCV cam2world matrices and normalised intrinsics."""
    if cam2world.shape[-2:] != (4, 4) or intrinsics.shape[-2:] != (3, 3):
        raise ValueError(
            f"expected (..., 4, 4) and (..., 3, 3), got {tuple(cam2world.shape)} and {tuple(intrinsics.shape)}"
        )
    return torch.cat([cam2world.flatten(-2), intrinsics.flatten(-2)], dim=-1)


def split_camera_labels(
    labels: Float[Tensor, "*batch 25"],
) -> tuple[Float[Tensor, "*batch 4 4"], Float[Tensor, "*batch 3 3"]]:
    """The cam2world matrices and normalised intrinsics of EG3D camera labels."""
    if labels.shape[-1:] != (LABEL_SIZE,):
        raise ValueError(f"camera labels must have shape (..., {LABEL_SIZE}), got {tuple(labels.shape)}")
    batch = labels.shape[:-1]
    return labels[..., :16].reshape(*batch, 4, 4), labels[..., 16:].reshape(*batch, 3, 3)


def mirror_camera_label(label: Float[Tensor, "*batch 25"]) -> Float[Tensor, "*batch 25"]:
    """The camera that sees the world mirrored in ``x`` as the original sees it, mirrored left-right.

    If ``label`` sees the point ``(x, y, z)`` at pixel ``(u, v)``, the result sees ``(-x, y, z)``
    at ``(W - u, v)``; so it is the label of a horizontally flipped image of the mirrored scene,
    which is how x-flip augmentation pairs flipped images with cameras. It is an involution.

    The cam2world becomes ``M C M`` with ``M = diag(-1, 1, 1, 1)`` (mirror the world, and flip the
    camera's x axis to keep the frame right-handed): this is EG3D's ``flip_yaw``, negating entries
    ``[0,1], [0,2], [1,0], [2,0], [0,3]``. The intrinsics get ``cx -> 1 - cx`` and a negated skew,
    which leaves centred cameras (all of EG3D's) unchanged.
    """
    if not label.is_floating_point():
        raise ValueError(f"label must be a floating-point tensor, got {label.dtype}")
    cam2world, intrinsics = split_camera_labels(label)
    world_mirror = torch.diag(label.new_tensor([-1.0, 1.0, 1.0, 1.0]))
    # Pixel u -> 1 - u in normalised coordinates, composed with the camera's x flip.
    u_mirror = label.new_tensor([[-1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    x_flip = torch.diag(label.new_tensor([-1.0, 1.0, 1.0]))
    return camera_labels(world_mirror @ cam2world @ world_mirror, u_mirror @ intrinsics @ x_flip)


class CameraImageDataset(Dataset):
    """Posed images of an EG3D-format dataset (folder or zip), for a GAN's real images and poses.

    Item ``i`` is ``(image, label)``: a float32 ``(3, R, R)`` image in ``[-1, 1]`` and its float32
    camera label ``(25,)``. Grayscale, palette and RGBA images are converted to RGB (alpha is
    dropped). With ``xflip`` the dataset has ``2N`` items; item ``N + i`` is image ``i`` flipped
    left-right with the mirrored camera (``mirror_camera_label``), as EG3D's mirrored datasets.

    The dataset is validated on construction. Images are decoded on first access; when all decoded
    images fit in ``CACHE_LIMIT_BYTES`` they are kept in memory (``cache=None`` decides by size),
    which makes small datasets such as the synthetic one free to iterate after the first epoch.
    With DataLoader workers each worker keeps its own cache. Zips are reopened in every process.

    Args:
        path: the dataset folder or zip.
        xflip: add mirrored copies of every image.
        resolution: resize the images to this side (antialiased bilinear, rounded to uint8);
            ``None`` keeps them.
        cache: keep decoded images in memory; ``None`` does so when they fit the limit.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        xflip: bool = False,
        resolution: int | None = None,
        cache: bool | None = None,
    ):
        self.info = validate_dataset(path)
        if resolution is not None and (type(resolution) is not int or resolution < 1):
            raise ValueError(f"resolution must be a positive int or None, got {resolution!r}")
        self._source = _Source(self.info.path)
        self._resolution = self.info.resolution if resolution is None else resolution
        self._xflip = xflip
        labels = torch.from_numpy(self.info.labels)
        self._labels = torch.cat([labels, mirror_camera_label(labels)]) if xflip else labels
        if cache is None:
            cache = self.info.num_images * 3 * self._resolution**2 <= CACHE_LIMIT_BYTES
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    @property
    def resolution(self) -> int:
        """Side of the returned images, in pixels."""
        return self._resolution

    @property
    def labels(self) -> Float[Tensor, "items 25"]:
        """The camera label of every item (``N`` or ``2N`` rows): the poses a generator conditions on."""
        return self._labels

    @property
    def names(self) -> tuple[str, ...]:
        """The image file of every item (``N`` or ``2N``; mirrored items repeat their source's name)."""
        return self.info.names * (2 if self._xflip else 1)

    def __len__(self) -> int:
        return len(self._labels)

    def _decode(self, index: int) -> np.ndarray:
        """Image ``index`` as uint8 ``(R, R, 3)`` at the dataset's output resolution, from the cache
        when it is there. Resized images are rounded to uint8, as a dataset stored at that size is."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        name = self.info.names[index]
        image = _open_image(self._source, name)
        try:
            pixels = np.array(image.convert("RGB"))  # a writable copy, as torch.from_numpy wants
        except (OSError, SyntaxError, ValueError) as error:
            raise DatasetError(f"{self._source.describe(name)}: cannot decode image ({error})") from error
        if pixels.shape[0] != self._resolution:
            # Antialiased bilinear weights are non-negative, so values stay in [0, 255].
            resized = F.interpolate(
                torch.from_numpy(pixels).permute(2, 0, 1)[None].float(),
                size=(self._resolution, self._resolution),
                mode="bilinear",
                antialias=True,
            )[0]
            pixels = resized.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy().copy()
        if self._cache is not None:
            self._cache[index] = pixels
        return pixels

    def __getitem__(self, index: int) -> tuple[Float[Tensor, "3 R R"], Float[Tensor, "25"]]:
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        index %= len(self)
        source_index = index % self.info.num_images
        image = torch.from_numpy(self._decode(source_index)).permute(2, 0, 1).float()
        if index >= self.info.num_images:
            image = image.flip(-1)
        return image / 127.5 - 1.0, self._labels[index].clone()


def write_dataset(
    path: str | os.PathLike,
    images: UInt8[np.ndarray, "N H W 3"] | Iterable[UInt8[np.ndarray, "H W 3"]],
    labels: Float[np.ndarray, "N 25"] | Float[Tensor, "N 25"],
    names: Iterable[str] | None = None,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write a dataset folder of PNGs and ``dataset.json`` (and ``extra_files``) atomically.

    Everything is written into a temporary sibling folder that is renamed to ``path`` at the end,
    so ``path`` either does not exist or holds a complete dataset, even if several processes write
    it at once (one wins; the others get ``FileExistsError``). ``images`` may be an iterable of
    ``(H, W, 3)`` uint8 arrays, consumed once, so that large datasets can be streamed.

    Args:
        path: the folder to create; it must not exist, or be empty.
        images: square uint8 RGB images of one size.
        labels: one EG3D camera label per image.
        names: relative ``.png`` file names; ``img00000000.png``, ... by default.
        extra_files: more files for the dataset root (e.g. ground truth), name -> content.

    Raises:
        ValueError: bad images, labels or names (nothing is left on disk).
        FileExistsError: ``path`` already holds something.
    """
    path = Path(path)
    labels = torch.as_tensor(labels).detach().cpu().double().numpy()
    if labels.ndim != 2 or labels.shape[1] != LABEL_SIZE:
        raise ValueError(f"labels must have shape (N, {LABEL_SIZE}), got {labels.shape}")
    if not np.isfinite(labels).all():
        raise ValueError("labels hold non-finite numbers")
    count = len(labels)
    names = [f"img{index:08d}.png" for index in range(count)] if names is None else list(names)
    if len(names) != count:
        raise ValueError(f"got {len(names)} names for {count} labels")
    for name in names:
        _check_name(name, "write_dataset")
        if not name.lower().endswith(".png"):
            raise ValueError(f"image names must end with .png, got {name!r}")
    if len(set(names)) != count or DATASET_JSON in names or set(names) & set(extra_files or {}):
        raise ValueError("image names must be unique and differ from dataset.json and the extra files")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} already exists")

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    temporary.mkdir()
    try:
        written, size = 0, None
        for image, name in zip(images, names + [None]):
            image = np.asarray(image)
            if name is None:
                raise ValueError(f"got more images than the {count} labels")
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
                raise ValueError(f"images must be square uint8 (H, W, 3), got {image.dtype} {image.shape} for {name}")
            if size is not None and image.shape != size:
                raise ValueError(f"image {name} is {image.shape} but the first image is {size}")
            size = image.shape
            (temporary / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(temporary / name, format="PNG")
            written += 1
        if written != count:
            raise ValueError(f"got {written} images for {count} labels")
        entries = [[name, label] for name, label in zip(names, labels.tolist())]
        (temporary / DATASET_JSON).write_text(json.dumps({"labels": entries}))
        for name, content in (extra_files or {}).items():
            target = temporary / _check_name(name, "write_dataset extra file")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        try:
            os.rename(temporary, path)  # atomic; replaces an empty folder, fails on a non-empty one
        except OSError as error:
            raise FileExistsError(f"{path} already exists (written concurrently?)") from error
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return path
