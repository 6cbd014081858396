"""Argument checks shared by the public functions.

Every check raises ``ValueError`` with a message that names the offending argument, so that bad
input fails at the API boundary instead of as a NaN or a shape error deep inside torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_floating(name: str, value: object) -> Tensor:
    tensor = check_tensor(name, value)
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    return tensor


def check_finite(name: str, value: Tensor) -> Tensor:
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return value


def check_last_dims(name: str, value: Tensor, trailing: Sequence[int]) -> Tensor:
    """Check the trailing dimensions of ``value`` (e.g. ``(3,)`` for points, ``(4, 4)`` for poses)."""
    trailing = tuple(trailing)
    if value.dim() < len(trailing) or tuple(value.shape[value.dim() - len(trailing) :]) != trailing:
        expected = ", ".join(["..."] + [str(size) for size in trailing])
        raise ValueError(f"{name} must have shape ({expected}), got {tuple(value.shape)}")
    return value


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_probability(name: str, value: object, *, open_low: bool = True, open_high: bool = False) -> float:
    """Check a number in (0, 1] (``open_low=False`` closes the low end, ``open_high=True`` opens the high one)."""
    interval = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    value = float(value)
    low_ok = value > 0.0 if open_low else value >= 0.0
    high_ok = value < 1.0 if open_high else value <= 1.0
    if not (low_ok and high_ok):
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


def check_broadcastable(name: str, value: Tensor, batch_shape: torch.Size) -> Tensor:
    try:
        return value.expand(batch_shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} does not broadcast to the ray batch shape {tuple(batch_shape)}"
        ) from None
