"""The StyleGAN2 residual discriminator with projection conditioning on the camera label.

Layout (Karras et al. 2020, Fig. 7 "residual"; conditioning as Miyato & Koyama 2018's projection
discriminator, used by StyleGAN2-ADA and EG3D with the camera label ``c``)::

    fromRGB (1x1, lrelu) at R  ->  residual blocks R -> R/2 -> ... -> 4  ->  epilogue at 4 x 4

* block: ``y = (skip(x) + conv1(conv0(x))) / sqrt(2)``; ``conv0`` 3x3, ``conv1`` 3x3 with
  down x2, ``skip`` 1x1 with down x2 and no bias. The ``1 / sqrt(2)`` keeps the sum of two
  unit-variance branches at unit variance.
* epilogue: minibatch standard deviation, 3x3 conv, fully connected ``16 C -> C``, and an output
  layer to ``cmap_dim`` (conditional) or 1 (``c_dim = 0``).
* conditioning: ``cmap = mapping(c)`` and ``logit = sum_j(x_j cmap_j) / sqrt(cmap_dim)``, i.e. the
  image features are projected onto a label embedding, so the critic judges image and pose jointly.

Down-sampling is a ``[1, 3, 3, 1]`` blur followed by a stride-2 convolution (see ``layers``).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from learned_sampler.validation import check_positive_int
from wysiwyg_gan.networks.layers import EqualizedConv2d, EqualizedLinear, check_network_sizes, check_shape
from wysiwyg_gan.networks.mapping import MappingNetwork


class MinibatchStd(nn.Module):
    """Appends ``num_channels`` feature maps holding the standard deviation across a sample group.

    The batch is split into ``M = ceil(B / G)`` groups with ``G = min(group_size, B)``, sample ``i``
    going to group ``i mod M`` (the strided grouping StyleGAN2 uses). When ``B`` is a multiple of
    ``G`` every group has ``G`` members; otherwise group sizes differ by at most one, so any batch
    size works and no sample sits alone in a group of one (which would always read std 0) unless
    ``B = 1``. For each group and each of the ``num_channels`` channel slices, the statistic is
    ``mean_{c,h,w} sqrt(var_group(x) + 1e-8)`` (population variance), broadcast to the members'
    pixels. A batch of collapsed, look-alike samples thus shows up as a low value the
    discriminator can detect.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        check_positive_int("mbstd_group_size", group_size)
        check_positive_int("mbstd_num_channels", num_channels)
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(
        self, x: Float[Tensor, "batch channels height width"]
    ) -> Float[Tensor, "batch channels+num_channels height width"]:
        batch, channels, height, width = x.shape
        if channels % self.num_channels != 0:
            raise ValueError(f"mbstd_num_channels={self.num_channels} must divide the {channels} feature channels")
        num_groups = math.ceil(batch / min(self.group_size, batch))
        group_of = torch.arange(batch, device=x.device) % num_groups
        membership = nn.functional.one_hot(group_of, num_groups).T.to(x.dtype)  # (groups, batch)
        counts = membership.sum(dim=1, keepdim=True)
        flat = x.reshape(batch, -1)
        mean = membership @ flat / counts
        variance = membership @ (flat - mean[group_of]).square() / counts
        std = torch.sqrt(variance + 1e-8).reshape(num_groups, self.num_channels, -1).mean(dim=2)
        stat = std[group_of][:, :, None, None].expand(batch, self.num_channels, height, width)
        return torch.cat([x, stat], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorBlock(nn.Module):
    """Residual block ``(skip(x) + conv1(conv0(x))) / sqrt(2)`` halving the resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, activation="lrelu", down=2)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False, down=2)

    def forward(
        self, x: Float[Tensor, "batch in_channels height width"]
    ) -> Float[Tensor, "batch out_channels height/2 width/2"]:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class Discriminator(nn.Module):
    """``(img, c) -> logits``: the StyleGAN2 residual discriminator, projection-conditioned on ``c``.

    Channels at resolution ``r`` are ``min(channel_base // r, channel_max)``. ``cmap_dim`` defaults
    to the 4 x 4 channel count; ``mapping_layers`` is the depth of the label mapping network
    (a :class:`MappingNetwork` with ``z_dim = 0`` and its default ``lr_multiplier = 0.01``).
    ``c_dim = 0`` gives an unconditional critic.
    Arguments after ``c_dim`` are keyword-only (``img_resolution`` has no default).
    """

    def __init__(
        self,
        c_dim: int = 25,
        *,
        img_resolution: int,
        img_channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        cmap_dim: int | None = None,
        mapping_layers: int = 2,
    ):
        super().__init__()
        check_positive_int("c_dim", c_dim, minimum=0)
        check_network_sizes(img_resolution, img_channels, channel_base, channel_max)
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        resolutions = [2**i for i in range(img_resolution.bit_length() - 1, 1, -1)]  # R, R/2, ..., 4
        self.channels = {res: min(channel_base // res, channel_max) for res in resolutions}
        final_channels = self.channels[4]
        check_positive_int("mbstd_num_channels", mbstd_num_channels)
        if final_channels % mbstd_num_channels != 0:
            raise ValueError(
                f"mbstd_num_channels={mbstd_num_channels} must divide the 4x4 channel count {final_channels}"
            )
        if cmap_dim is None:
            cmap_dim = final_channels
        check_positive_int("cmap_dim", cmap_dim)
        self.cmap_dim = cmap_dim if c_dim > 0 else 0

        self.from_rgb = EqualizedConv2d(img_channels, self.channels[img_resolution], 1, activation="lrelu")
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(self.channels[res], self.channels[res // 2]) for res in resolutions[:-1]
        )
        self.mbstd = MinibatchStd(mbstd_group_size, mbstd_num_channels)
        self.conv = EqualizedConv2d(final_channels + mbstd_num_channels, final_channels, 3, activation="lrelu")
        self.fc = EqualizedLinear(final_channels * 4 * 4, final_channels, activation="lrelu")
        self.out = EqualizedLinear(final_channels, cmap_dim if c_dim > 0 else 1)
        self.mapping = (
            MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=1, num_layers=mapping_layers)
            if c_dim > 0
            else None
        )

    def forward(
        self, img: Float[Tensor, "batch img_channels height width"], c: Float[Tensor, "batch c_dim"] | None
    ) -> Float[Tensor, "batch 1"]:
        """``c`` may be ``None`` when ``c_dim == 0``."""
        size = self.img_resolution
        img = check_shape(
            "img", img, [("batch", None), ("img_channels", self.img_channels), ("height", size), ("width", size)]
        )
        batch = img.shape[0]
        if c is not None or self.c_dim > 0:
            if c is None:
                raise ValueError(f"c is required: c_dim={self.c_dim}")
            check_shape("c", c, [("batch", batch), ("c_dim", self.c_dim)])

        x = self.from_rgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.conv(self.mbstd(x))
        x = self.out(self.fc(x.flatten(1)))
        if self.mapping is None:
            return x
        cmap = self.mapping(None, c)[:, 0]
        return (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)

    def extra_repr(self) -> str:
        return f"c_dim={self.c_dim}, img_resolution={self.img_resolution}, cmap_dim={self.cmap_dim}"
