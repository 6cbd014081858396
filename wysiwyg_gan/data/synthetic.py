"""The embedded procedural dataset: posed renders of random 3D objects with known geometry.

Every image shows one random object (``sample_shape_spec``) from a random orbit camera with a
frontal bias (``sample_camera_labels``), rendered by ``render_shapes`` on black, or on an opaque
backdrop (``backdrop=True``). ``geometry.json`` beside ``dataset.json`` keeps each image's
``ShapeSpec``, the ground truth for geometry metrics (``load_shape_specs``, then ``shape_sdf`` and
``sample_surface_points``). ``default_dataset`` generates the dataset once into ``cache_folder()``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, UInt8
from torch import Tensor

from learned_sampler.validation import check_positive_int
from wysiwyg_gan.data.camera_sampling import sample_camera_labels
from wysiwyg_gan.data.dataset import DATASET_JSON, DatasetError, _Source, write_dataset
from wysiwyg_gan.data.shape_rendering import render_shapes
from wysiwyg_gan.data.shape_sampling import sample_shape_spec
from wysiwyg_gan.data.shapes import ShapeSpec

SYNTHETIC_VERSION = 1
"""Version of the generator; part of the cache folder name. Bump it whenever the output changes:
this module's, or that of the shape and camera sampling or the renderer it calls."""
GEOMETRY_JSON = "geometry.json"
"""Name of the ground-truth file beside ``dataset.json``."""
DEFAULT_NUM_IMAGES = 2000
"""Images in the default dataset (generated once, in under a minute of one CPU core at 64x64)."""


def backdrop_images(
    num_images: int, resolution: int, generator: torch.Generator | None = None
) -> Float[Tensor, "num_images resolution resolution 3"]:
    """Opaque studio backdrops in [0, 1]: per image, a vertical blend between two random muted
    colours. Behind every object of a ``backdrop=True`` dataset, as a portrait's background is
    behind a face: the GAN has to model it, since nothing in the image is empty."""
    check_positive_int("num_images", num_images)
    check_positive_int("resolution", resolution)
    top = 0.15 + 0.7 * torch.rand(num_images, 1, 1, 3, generator=generator)
    bottom = 0.15 + 0.7 * torch.rand(num_images, 1, 1, 3, generator=generator)
    blend = torch.linspace(0.0, 1.0, resolution)[None, :, None, None]
    return (top + (bottom - top) * blend).expand(num_images, resolution, resolution, 3)


def _render_uint8(
    specs: Sequence[ShapeSpec],
    labels: Tensor,
    resolution: int,
    backdrops: Tensor | None = None,
    batch: int = 128,
) -> Iterator[UInt8[np.ndarray, "R R 3"]]:
    """Rendered uint8 images, a batch at a time (so datasets of any size stream to disk), over
    ``backdrops`` (one per image) where given, else over black."""
    for start in range(0, len(specs), batch):
        rgb, coverage = render_shapes(specs[start : start + batch], labels[start : start + batch], resolution)
        if backdrops is not None:
            rgb = rgb + (1.0 - coverage[..., None]) * backdrops[start : start + batch]
        yield from (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()


def synthesize_dataset(
    out: str | os.PathLike,
    num_images: int = DEFAULT_NUM_IMAGES,
    resolution: int = 64,
    seed: int = 0,
    backdrop: bool = False,
) -> Path:
    """Write a synthetic dataset (PNGs, ``dataset.json``, ``geometry.json``) to the new folder ``out``.

    Deterministic for a seed. ``backdrop`` puts every object in front of an opaque backdrop
    (``backdrop_images``) instead of black, like the background of a face dataset; the objects and
    cameras are the same as without it. Written atomically by ``write_dataset``: ``out`` must not
    exist yet, and ``FileExistsError`` means another process wrote it first.
    """
    check_positive_int("num_images", num_images)
    check_positive_int("resolution", resolution)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists")
    generator = torch.Generator().manual_seed(seed)
    specs = [sample_shape_spec(generator) for _ in range(num_images)]
    labels = sample_camera_labels(num_images, generator)
    names = [f"img{index:08d}.png" for index in range(num_images)]
    geometry = {"version": SYNTHETIC_VERSION, "shapes": {name: spec.to_dict() for name, spec in zip(names, specs)}}
    backdrops = None
    if backdrop:
        geometry["backdrop"] = True
        backdrops = backdrop_images(num_images, resolution, torch.Generator().manual_seed(seed + 1_000_003))
    return write_dataset(
        out,
        _render_uint8(specs, labels, resolution, backdrops),
        labels,
        names,
        extra_files={GEOMETRY_JSON: json.dumps(geometry)},
    )


def load_shape_specs(path: str | os.PathLike) -> dict[str, ShapeSpec]:
    """The ground-truth objects of a synthetic dataset (folder or zip): image name -> ShapeSpec."""
    source = _Source(Path(path))
    where = source.describe(GEOMETRY_JSON)
    if not source.exists(GEOMETRY_JSON):
        raise DatasetError(f"{where}: missing; only synthetic datasets have ground-truth geometry")
    try:
        shapes = json.loads(source.read(GEOMETRY_JSON))["shapes"]
        return {name: ShapeSpec.from_dict(data) for name, data in shapes.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DatasetError(f"{where}: malformed ground truth ({error!r})") from error


def cache_folder() -> Path:
    """Where ``wysiwyg_gan`` keeps what it generates once and reuses (datasets, feature encoders):
    ``$WYSIWYG_GAN_CACHE``, else ``$XDG_CACHE_HOME/wysiwyg_gan``, else ``~/.cache/wysiwyg_gan``."""
    if os.environ.get("WYSIWYG_GAN_CACHE"):
        return Path(os.environ["WYSIWYG_GAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wysiwyg_gan"


def default_dataset(resolution: int = 64, num_images: int = DEFAULT_NUM_IMAGES, seed: int = 0) -> Path:
    """The embedded synthetic dataset, generated on first use and reused afterwards.

    It lives in ``cache_folder()`` under ``synthetic-v<version>-<resolution>-<num_images>-<seed>``.
    Generation is deterministic and atomic, so concurrent processes may race to create it: one
    wins, the others reuse its result.
    """
    path = cache_folder() / f"synthetic-v{SYNTHETIC_VERSION}-{resolution}-{num_images}-{seed}"
    if not (path / DATASET_JSON).is_file():
        try:
            synthesize_dataset(path, num_images=num_images, resolution=resolution, seed=seed)
        except FileExistsError:
            if not (path / DATASET_JSON).is_file():
                raise DatasetError(f"{path}: exists but holds no {DATASET_JSON}; delete it to regenerate") from None
    return path
