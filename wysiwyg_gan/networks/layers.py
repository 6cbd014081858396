"""Equalised-learning-rate layers and the modulated convolution of StyleGAN2.

Written from the published equations, not from the reference implementation:

* Equalised learning rate (Karras et al. 2018, Sec. 4.1): a weight is stored as ``N(0, 1) /
  lr_multiplier`` and used as ``stored * lr_multiplier / sqrt(fan_in)``. The run-time He constant
  keeps every layer's output at unit variance, and because Adam's steps are scale-free in the stored
  parameter, every layer trains at the same effective rate, times ``lr_multiplier``.
* Modulation / demodulation (Karras et al. 2020, Eq. 1 and 3): with a per-sample style ``s``,
  ``w'_ijk = s_i * w_ijk`` and ``w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + 1e-8)``, where ``i``
  runs over input channels, ``j`` over output channels and ``k`` over the kernel taps. A batch of
  per-sample kernels is applied as one grouped convolution (groups = batch).
* ``lrelu`` is ``leaky_relu(x, 0.2) * sqrt(2)``; the gain restores the variance the rectifier
  removes, so stacked layers stay at roughly unit scale.

Resampling (the paper specifies FIR filtering; the exact realisation is ours):

* Up x2 is bilinear interpolation (``align_corners=False``) before the convolution. In the interior
  this equals zero insertion followed by the separable ``[1, 3, 3, 1]`` filter (gain 4), the
  StyleGAN2 up-filter; at the border it replicates instead of zero-padding. It keeps a single
  convolution code path (no transposed grouped convolution and its weight re-layout), and the
  convolution then runs at the output resolution, as a transposed convolution effectively does.
* Down x2 is a ``[1, 3, 3, 1]`` blur (normalised to sum 1, zero padding) followed by a stride-2
  convolution: low-pass before subsampling to avoid aliasing. For an odd kernel size ``k`` the blur
  pads ``(k + 1) // 2`` on each side, which centres every output pixel between two input pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from learned_sampler.validation import check_positive_int

Activation = Literal["linear", "lrelu"]
NoiseMode = Literal["random", "const", "none"]

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
NOISE_MODES = ("random", "const", "none")


def check_network_sizes(img_resolution: int, img_channels: int, channel_base: int, channel_max: int) -> None:
    """Validate the sizes shared by the synthesis network and the discriminator."""
    check_positive_int("img_resolution", img_resolution)
    if img_resolution < 4 or img_resolution & (img_resolution - 1) != 0:
        raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
    check_positive_int("img_channels", img_channels)
    check_positive_int("channel_base", channel_base)
    check_positive_int("channel_max", channel_max)
    if channel_base < img_resolution:
        raise ValueError(
            f"channel_base must be >= img_resolution ({img_resolution}) so that every block has a channel, "
            f"got {channel_base}"
        )


def check_shape(name: str, value: object, expected: Sequence[tuple[str, int | None]]) -> Tensor:
    """Check that ``value`` is a floating tensor of the given shape; ``None`` sizes are free.

    ``expected`` names every dimension so that the error says which one is wrong, e.g.
    ``z must have shape (batch, z_dim=512), got (4, 256)``.
    """
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    matches = value.dim() == len(expected) and all(
        size is None or value.shape[axis] == size for axis, (_, size) in enumerate(expected)
    )
    if not matches:
        spec = ", ".join(label if size is None else f"{label}={size}" for label, size in expected)
        raise ValueError(f"{name} must have shape ({spec}), got {tuple(value.shape)}")
    return value


def _check_activation(activation: str) -> None:
    if activation not in ("linear", "lrelu"):
        raise ValueError(f"activation must be 'linear' or 'lrelu', got {activation!r}")


def _check_odd_kernel(kernel_size: object) -> int:
    check_positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        # Odd kernels keep "same" padding symmetric, so up/down-sampled grids stay aligned.
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    return kernel_size


def _check_factor(name: str, value: object) -> int:
    if value not in (1, 2) or isinstance(value, bool):
        raise ValueError(f"{name} must be 1 or 2, got {value!r}")
    return value


def apply_bias_activation(x: Tensor, bias: Tensor | None, activation: str) -> Tensor:
    """``act(x + b)`` with ``b`` along dim 1 (features or channels); ``lrelu = leaky_relu(., 0.2) sqrt(2)``."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.dim() - 2)))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
    return x


def upsample2x(x: Float[Tensor, "batch channels height width"]) -> Float[Tensor, "batch channels 2*height 2*width"]:
    """Bilinear x2 upsampling: zero insertion + separable ``[1, 3, 3, 1]`` filter in the interior."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _fir_kernel() -> Tensor:
    """The separable ``[1, 3, 3, 1]`` low-pass filter as a 4 x 4 kernel summing to 1."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(taps, taps)
    return kernel / kernel.sum()


def blur(x: Float[Tensor, "batch channels height width"], kernel: Tensor, pad: int) -> Tensor:
    """Depthwise FIR filtering with ``pad`` zeros on every side (size changes by ``2 pad - 3``)."""
    channels = x.shape[1]
    x = F.pad(x, [pad, pad, pad, pad])
    weight = kernel.to(x.dtype)[None, None].expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=channels)


class EqualizedLinear(nn.Module):
    """``y = act(x W^T * lr_multiplier / sqrt(in_features) + b * lr_multiplier)``.

    ``W`` is stored as ``N(0, 1) / lr_multiplier`` and ``b`` as ``bias_init / lr_multiplier``, so at
    initialisation the effective weight has variance ``1 / in_features`` (unit output variance for
    unit input) and the effective bias is ``bias_init``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: Activation = "linear",
    ):
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("out_features", out_features)
        if not lr_multiplier > 0:
            raise ValueError(f"lr_multiplier must be > 0, got {lr_multiplier}")
        _check_activation(activation)
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Float[Tensor, "batch in_features"]) -> Float[Tensor, "batch out_features"]:
        x = F.linear(x, self.weight * self.weight_gain)
        bias = None if self.bias is None else self.bias * self.bias_gain
        return apply_bias_activation(x, bias, self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class EqualizedConv2d(nn.Module):
    """``y = act(conv(resample(x), W / sqrt(in_channels k^2)) + b)`` with "same" padding.

    ``up=2``: bilinear x2 upsampling, then the convolution. ``down=2``: ``[1, 3, 3, 1]`` blur, then
    the convolution with stride 2 (see the module docstring). ``kernel_size`` must be odd.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: Activation = "linear",
        up: int = 1,
        down: int = 1,
    ):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        _check_odd_kernel(kernel_size)
        _check_activation(activation)
        _check_factor("up", up)
        _check_factor("down", down)
        if up == 2 and down == 2:
            raise ValueError("up and down cannot both be 2")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.activation = activation
        self.up = up
        self.down = down
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("fir", _fir_kernel(), persistent=False)

    def forward(
        self, x: Float[Tensor, "batch in_channels height width"]
    ) -> Float[Tensor, "batch out_channels out_height out_width"]:
        check_shape("x", x, [("batch", None), ("in_channels", self.in_channels), ("height", None), ("width", None)])
        weight = self.weight * self.weight_gain
        if self.down == 2:
            x = blur(x, self.fir, pad=(self.kernel_size + 1) // 2)
            x = F.conv2d(x, weight, stride=2)
        else:
            if self.up == 2:
                x = upsample2x(x)
            x = F.conv2d(x, weight, padding=self.kernel_size // 2)
        return apply_bias_activation(x, self.bias, self.activation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"activation={self.activation}, up={self.up}, down={self.down}"
        )


class ModulatedConv2d(nn.Module):
    """StyleGAN2's weight-(de)modulated convolution (Karras et al. 2020, Eq. 1-3), no bias.

    ``s = affine(w)`` (an :class:`EqualizedLinear` with ``bias_init=1``, so styles start around 1);
    the per-sample kernel is ``w'_ijk = s_i * w_ijk / sqrt(in_channels k^2)``, demodulated to
    ``w''_ijk = w'_ijk * rsqrt(sum_{i,k} w'_ijk^2 + 1e-8)`` when ``demodulate``. Demodulation
    replaces instance normalisation: for i.i.d. unit-variance input, every output channel has unit
    variance. ``up=2`` upsamples the input bilinearly x2 before the convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        demodulate: bool = True,
        up: int = 1,
    ):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("w_dim", w_dim)
        _check_odd_kernel(kernel_size)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.w_dim = w_dim
        self.demodulate = demodulate
        self.up = _check_factor("up", up)
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(
        self, x: Float[Tensor, "batch in_channels height width"], w: Float[Tensor, "batch w_dim"]
    ) -> Float[Tensor, "batch out_channels out_height out_width"]:
        x = check_shape("x", x, [("batch", None), ("in_channels", self.in_channels), ("height", None), ("width", None)])
        batch = x.shape[0]
        check_shape("w", w, [("batch", batch), ("w_dim", self.w_dim)])
        styles = self.affine(w)
        # (batch, out, in, k, k): one kernel per sample, modulated along the input channels.
        weight = self.weight[None] * (styles * self.weight_gain)[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if self.up == 2:
            x = upsample2x(x)
        height, width = x.shape[2:]
        # Grouped convolution: the batch becomes channel groups, so each sample sees its own kernel.
        x = F.conv2d(
            x.reshape(1, batch * self.in_channels, height, width),
            weight.reshape(batch * self.out_channels, self.in_channels, self.kernel_size, self.kernel_size),
            padding=self.kernel_size // 2,
            groups=batch,
        )
        return x.reshape(batch, self.out_channels, height, width)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, w_dim={self.w_dim}, "
            f"demodulate={self.demodulate}, up={self.up}"
        )


class NoiseInjection(nn.Module):
    """``x + strength * n`` with a learned scalar ``strength`` (initialised to 0) per layer.

    ``n`` is one single-channel noise image broadcast over the channels: fresh ``N(0, 1)`` per call
    and sample for ``"random"``, a fixed buffer drawn at construction (saved with the state dict)
    for ``"const"``, and nothing for ``"none"``. Starting at strength 0 lets the generator decide
    how much stochastic detail it wants instead of starting from noisy features.
    """

    def __init__(self, resolution: int):
        super().__init__()
        check_positive_int("resolution", resolution)
        self.resolution = resolution
        self.strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(
        self, x: Float[Tensor, "batch channels height width"], noise_mode: NoiseMode = "random"
    ) -> Float[Tensor, "batch channels height width"]:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise_mode == "none":
            return x
        batch, _, height, width = x.shape
        if (height, width) != (self.resolution, self.resolution):
            raise ValueError(
                f"noise injection built for {self.resolution}x{self.resolution} features, got {height}x{width}"
            )
        if noise_mode == "random":
            noise = torch.randn(batch, 1, height, width, device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        return x + noise * self.strength


class ToRGB(nn.Module):
    """Skip output ``img = modconv(x, w) + b``: a modulated ``kernel_size`` conv (1 x 1 by default)
    without demodulation, so the style scales the output, plus a bias and no activation."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, kernel_size: int = 1):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, img_channels, kernel_size, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(
        self, x: Float[Tensor, "batch in_channels height width"], w: Float[Tensor, "batch w_dim"]
    ) -> Float[Tensor, "batch img_channels height width"]:
        return apply_bias_activation(self.conv(x, w), self.bias, "linear")
