"""Registers ``ns-train wysiwyg-sampler`` (entry point ``nerfstudio.method_configs``).

Import-light on purpose: this module imports nerfstudio's config classes and this package's model
module only, never ``nerfstudio.configs.method_configs``, which imports the plug-ins while it is
itself being imported (a circular import otherwise).

The defaults suit Blender-format scenes (``blender-data``, the default dataparser here) on a GPU:
per batch, 4096 random rays train the field (as nerfacto's 4096) and 1024 rays as four 16x16
patches train the probe and the CNN (``datamanager``). On a CPU use fewer rays, the torch field and
a smaller hash table, e.g.::

    ns-train wysiwyg-sampler --machine.device-type cpu --vis tensorboard \\
        --pipeline.datamanager.train-num-rays-per-batch 512 --pipeline.model.implementation torch \\
        --pipeline.model.log2-hashmap-size 15 --pipeline.model.max-res 256 --data DIR

``ns-train wysiwyg-sampler`` restarts itself once with ``OMP_WAIT_POLICY=PASSIVE`` unless the
variable is set (``cpu_threads``: spinning OpenMP threads slow training many times on shared CPUs).
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.data.pixel_samplers import PatchPixelSamplerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from wysiwyg_nerfstudio.cpu_threads import passive_wait_restart
from wysiwyg_nerfstudio.datamanager import WysiwygDataManagerConfig
from wysiwyg_nerfstudio.model import WysiwygSamplerModelConfig
from wysiwyg_nerfstudio.pipeline import WysiwygPipelineConfig
from wysiwyg_nerfstudio.schedulers import FloatExponentialDecaySchedulerConfig

METHOD_NAME = "wysiwyg-sampler"
"""The name ``ns-train`` lists (it uses ``TrainerConfig.method_name``, kept equal to the entry point key)."""
TRAIN_PATCH_SIZE = 16
"""Side of the training patches; the pixel sampler and the model must agree on it."""


def wysiwyg_trainer_config() -> TrainerConfig:
    """A fresh ``TrainerConfig`` of the method (tests and benchmarks edit their own copy)."""
    return TrainerConfig(
        method_name=METHOD_NAME,
        steps_per_eval_batch=500,
        steps_per_save=2000,
        max_num_iterations=30000,
        mixed_precision=True,
        pipeline=WysiwygPipelineConfig(
            datamanager=WysiwygDataManagerConfig(
                dataparser=BlenderDataParserConfig(),
                train_num_rays_per_batch=4096,
                sampler_rays_per_batch=1024,
                eval_num_rays_per_batch=4096,
                # Set here, not through --pipeline.datamanager.patch-size (which yields 0 rays for
                # batches under 1024 rays in nerfstudio 1.1.5); eval batches use it too.
                pixel_sampler=PatchPixelSamplerConfig(patch_size=TRAIN_PATCH_SIZE),
            ),
            model=WysiwygSamplerModelConfig(train_patch_size=TRAIN_PATCH_SIZE, eval_num_rays_per_chunk=1 << 15),
        ),
        optimizers={
            "fields": {
                "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
                "scheduler": FloatExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=200000),
            },
            "learned_sampler": {
                "optimizer": AdamOptimizerConfig(lr=1e-3, eps=1e-15),
                "scheduler": FloatExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=200000),
            },
            "camera_opt": {
                "optimizer": AdamOptimizerConfig(lr=1e-3, eps=1e-15),
                "scheduler": FloatExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=5000),
            },
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


wysiwyg_sampler = MethodSpecification(
    config=wysiwyg_trainer_config(),
    description="nerfacto's field sampled by the learned ray sampler (probe + proposal CNN, robust adaptive sampling)",
)

passive_wait_restart(METHOD_NAME)
