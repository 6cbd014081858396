"""Datasets in EG3D's dataset.json format and the embedded synthetic dataset."""

from wysiwyg_gan.data.camera_sampling import sample_camera_labels
from wysiwyg_gan.data.dataset import (
    CameraImageDataset,
    DatasetError,
    DatasetInfo,
    camera_labels,
    mirror_camera_label,
    split_camera_labels,
    validate_dataset,
    write_dataset,
)
from wysiwyg_gan.data.shape_rendering import render_shapes
from wysiwyg_gan.data.shape_sampling import sample_shape_spec
from wysiwyg_gan.data.shapes import FAMILIES, ShapeSpec, sample_surface_points, shape_sdf
from wysiwyg_gan.data.synthetic import (
    DEFAULT_NUM_IMAGES,
    backdrop_images,
    default_dataset,
    load_shape_specs,
    synthesize_dataset,
)

__all__ = [
    "DEFAULT_NUM_IMAGES",
    "FAMILIES",
    "CameraImageDataset",
    "DatasetError",
    "DatasetInfo",
    "ShapeSpec",
    "backdrop_images",
    "camera_labels",
    "default_dataset",
    "load_shape_specs",
    "mirror_camera_label",
    "render_shapes",
    "sample_camera_labels",
    "sample_shape_spec",
    "sample_surface_points",
    "shape_sdf",
    "split_camera_labels",
    "synthesize_dataset",
    "validate_dataset",
    "write_dataset",
]
