"""``WysiwygPipeline``: nerfstudio's pipeline, plus the one hand-over between model and datamanager.

Each training iteration the model predicts distributions for the sampler's patches (it needs them
to train the CNN). The pipeline passes those predictions to the datamanager's field-ray pool
(``WysiwygDataManager.keep_field_ray_predictions``), from which the next batches' field rays are
drawn with their distributions (``datamanager``). The model never sees the pool and the
datamanager never sees the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig

PATCH_PIXELS = "patch_pixels"
"""Model output in training: ``(num_patch_rays, 3)`` ``(camera, row, column)`` of the patch rays."""
PATCH_DISTRIBUTION = "patch_distribution"
"""Model output in training: ``(num_patch_rays, num_bins)`` their predicted distributions (no gradient)."""
PATCH_HIT_PROBABILITY = "patch_hit_probability"
"""Model output in training: ``(num_patch_rays,)`` their predicted hit probabilities."""


@dataclass
class WysiwygPipelineConfig(VanillaPipelineConfig):
    """``VanillaPipelineConfig`` whose pipeline feeds the model's patch predictions to the field-ray pool."""

    _target: Type = field(default_factory=lambda: WysiwygPipeline)
    """target class to instantiate"""


class WysiwygPipeline(VanillaPipeline):
    """``VanillaPipeline`` that hands the model's patch predictions to the datamanager (module docstring)."""

    def get_train_loss_dict(self, step: int):
        model_outputs, loss_dict, metrics_dict = super().get_train_loss_dict(step)
        if PATCH_PIXELS in model_outputs:
            self.datamanager.keep_field_ray_predictions(
                model_outputs[PATCH_PIXELS], model_outputs[PATCH_DISTRIBUTION], model_outputs[PATCH_HIT_PROBABILITY]
            )
        return model_outputs, loss_dict, metrics_dict
