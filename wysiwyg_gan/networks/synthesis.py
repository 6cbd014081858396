"""The StyleGAN2 synthesis network with the "skip" output architecture (Karras et al. 2020, Fig. 7).

A layer computes ``x <- lrelu(modconv(x, w) + strength * noise + b)``. A block at resolution ``r``
either starts from a learned constant (the first block, one layer) or upsamples x2 in its first
layer and adds a second one; in both cases it ends with a :class:`ToRGB` whose output is added to
the bilinearly x2-upsampled image of the previous block::

    img_r = upsample2x(img_{r/2}) + toRGB_r(x_r)

so every resolution contributes to the final image directly (no progressive growing).

``ws`` bookkeeping, as StyleGAN2: a block consumes ``num_conv`` ws and its ToRGB reads the next
one, which is also the first w of the following block; hence ``num_ws = sum(num_conv) + 1``
(14 at 256 x 256: 1 + 6 x 2 + 1).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from learned_sampler.validation import check_positive_int
from wysiwyg_gan.networks.layers import (
    check_network_sizes,
    ModulatedConv2d,
    NoiseInjection,
    NoiseMode,
    ToRGB,
    apply_bias_activation,
    check_shape,
    upsample2x,
)


class SynthesisLayer(nn.Module):
    """``y = lrelu(modconv(x, w) + strength * noise + b)`` at ``resolution`` (after the optional x2 up)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
    ):
        super().__init__()
        self.resolution = resolution
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, w_dim, demodulate=True, up=up)
        self.noise = NoiseInjection(resolution)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(
        self,
        x: Float[Tensor, "batch in_channels in_height in_width"],
        w: Float[Tensor, "batch w_dim"],
        noise_mode: NoiseMode = "random",
    ) -> Float[Tensor, "batch out_channels resolution resolution"]:
        x = self.noise(self.conv(x, w), noise_mode)
        return apply_bias_activation(x, self.bias, "lrelu")


class SynthesisBlock(nn.Module):
    """One resolution of the skip-architecture generator.

    ``in_channels == 0`` makes the first block: a learned ``(out_channels, resolution, resolution)``
    constant and one layer (``num_conv = 1``). Otherwise the block takes ``(B, in_channels, r/2,
    r/2)`` features, upsamples x2 in its first layer and applies a second (``num_conv = 2``). Every
    block has a ToRGB (``num_torgb = 1``); ``is_last`` is recorded for callers but changes no layer,
    because in the skip architecture the last block is built like the others.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool = False,
    ):
        super().__init__()
        check_positive_int("in_channels", in_channels, minimum=0)
        check_positive_int("out_channels", out_channels)
        check_positive_int("w_dim", w_dim)
        check_positive_int("resolution", resolution, minimum=4)
        check_positive_int("img_channels", img_channels)
        if in_channels > 0 and resolution % 2 != 0:
            raise ValueError(f"an upsampling block needs an even resolution, got {resolution}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        if in_channels == 0:
            # Learned input: the generator's content comes from the styles and noise, not from x.
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.conv0 = None
        else:
            self.const = None
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGB(out_channels, img_channels, w_dim)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(
        self,
        x: Float[Tensor, "batch in_channels half_res half_res"] | None,
        img: Float[Tensor, "batch img_channels half_res half_res"] | None,
        ws: Float[Tensor, "batch num_block_ws w_dim"],
        noise_mode: NoiseMode = "random",
    ) -> tuple[
        Float[Tensor, "batch out_channels resolution resolution"],
        Float[Tensor, "batch img_channels resolution resolution"],
    ]:
        """``ws`` holds ``num_conv + num_torgb`` styles: the layers' first, the ToRGB's last.

        ``x`` must be ``None`` for the first (constant-input) block; ``img`` is ``None`` when there
        is no coarser image to accumulate (the first block).
        """
        num_ws = self.num_conv + self.num_torgb
        ws = check_shape("ws", ws, [("batch", None), ("num_conv + num_torgb", num_ws), ("w_dim", self.w_dim)])
        batch = ws.shape[0]
        half = self.resolution // 2
        if self.const is not None:
            if x is not None:
                raise ValueError("x must be None for the first block: it starts from its learned constant")
            x = self.const[None].expand(batch, -1, -1, -1)
        else:
            x_dims = [("batch", batch), ("in_channels", self.in_channels), ("height", half), ("width", half)]
            check_shape("x", x, x_dims)
            x = self.conv0(x, ws[:, 0], noise_mode)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode)

        rgb = self.torgb(x, ws[:, self.num_conv])
        if img is None:
            img = rgb
        else:
            img_dims = [("batch", batch), ("img_channels", self.img_channels), ("height", half), ("width", half)]
            check_shape("img", img, img_dims)
            img = upsample2x(img) + rgb
        return x, img

    def extra_repr(self) -> str:
        return (
            f"resolution={self.resolution}, num_conv={self.num_conv}, num_torgb={self.num_torgb}, "
            f"is_last={self.is_last}"
        )


class SynthesisNetwork(nn.Module):
    """``ws -> img``: blocks at 4, 8, ..., ``img_resolution`` with ``min(channel_base // r, channel_max)``
    channels at resolution ``r``, the image accumulated through the ToRGB skips."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
    ):
        super().__init__()
        check_positive_int("w_dim", w_dim)
        check_network_sizes(img_resolution, img_channels, channel_base, channel_max)
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, img_resolution.bit_length())]
        self.channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        blocks = []
        for res in self.block_resolutions:
            in_channels = 0 if res == 4 else self.channels[res // 2]
            is_last = res == img_resolution
            blocks.append(SynthesisBlock(in_channels, self.channels[res], w_dim, res, img_channels, is_last=is_last))
        self.blocks = nn.ModuleList(blocks)
        self.num_ws = sum(block.num_conv for block in blocks) + blocks[-1].num_torgb

    def forward(
        self, ws: Float[Tensor, "batch num_ws w_dim"], noise_mode: NoiseMode = "random"
    ) -> Float[Tensor, "batch img_channels img_resolution img_resolution"]:
        check_shape("ws", ws, [("batch", None), ("num_ws", self.num_ws), ("w_dim", self.w_dim)])
        x = img = None
        w_index = 0
        for block in self.blocks:
            block_ws = ws[:, w_index : w_index + block.num_conv + block.num_torgb]
            x, img = block(x, img, block_ws, noise_mode)
            # The ToRGB w is shared with the next block's first layer (see the module docstring).
            w_index += block.num_conv
        return img

    def extra_repr(self) -> str:
        return f"img_resolution={self.img_resolution}, img_channels={self.img_channels}, num_ws={self.num_ws}"
