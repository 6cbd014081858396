"""Exponential learning-rate decay whose checkpoints load under ``torch.load(weights_only=True)``.

nerfstudio's ``ExponentialDecayScheduler`` computes its factor with numpy, so the learning rates
stored in optimiser and scheduler state are numpy scalars; torch >= 2.6 loads checkpoints with
``weights_only=True`` by default and refuses them (``Unsupported global:
numpy.core.multiarray.scalar``), which breaks ``ns-eval``, ``ns-render`` and ``ns-viewer`` on saved
runs. This scheduler has the same schedule (cosine or linear warm-up, then log-linear decay to
``lr_final``) computed with Python floats, so the method's checkpoints hold no numpy objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Type

from torch.optim import Optimizer, lr_scheduler

from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig, Scheduler


@dataclass
class FloatExponentialDecaySchedulerConfig(ExponentialDecaySchedulerConfig):
    """``ExponentialDecaySchedulerConfig`` with Python-float learning rates (see the module docstring)."""

    _target: Type = field(default_factory=lambda: FloatExponentialDecayScheduler)
    """target class to instantiate"""


class FloatExponentialDecayScheduler(Scheduler):
    """Warm-up to ``lr_init`` over ``warmup_steps``, then log-linear decay to ``lr_final`` at ``max_steps``."""

    config: FloatExponentialDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        config = self.config
        lr_final = lr_init if config.lr_final is None else config.lr_final
        if lr_init <= 0 or lr_final <= 0:
            raise ValueError(f"learning rates must be > 0, got lr_init={lr_init}, lr_final={lr_final}")

        def factor(step: int) -> float:
            if step < config.warmup_steps:
                progress = min(max(step / config.warmup_steps, 0.0), 1.0)
                ramp = math.sin(0.5 * math.pi * progress) if config.ramp == "cosine" else progress
                lr = config.lr_pre_warmup + (lr_init - config.lr_pre_warmup) * ramp
            else:
                span = max(config.max_steps - config.warmup_steps, 1)
                t = min(max((step - config.warmup_steps) / span, 0.0), 1.0)
                lr = math.exp(math.log(lr_init) * (1.0 - t) + math.log(lr_final) * t)
            return float(lr / lr_init)

        return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
