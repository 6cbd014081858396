"""The pose-conditioned mapping network ``(z, c) -> ws`` (StyleGAN2 with EG3D's conditioning).

Equations (Karras et al. 2019/2020; Chan et al. 2022 condition on the camera label ``c``, 25 numbers:
a flattened 4 x 4 cam2world matrix and 3 x 3 intrinsics):

* ``norm(x) = x / sqrt(mean(x^2) + 1e-8)`` (second-moment normalisation along the features),
* ``h = [norm(z), norm(embed(c))]``, ``embed`` an :class:`EqualizedLinear` ``c_dim -> w_dim``,
* ``w = f_L(... f_1(h))``, every ``f`` an lrelu :class:`EqualizedLinear` of width ``w_dim`` with
  ``lr_multiplier`` (0.01: the mapping network learns 100x slower, which StyleGAN found stabler),
* ``ws = [w] * num_ws`` (one copy per synthesis layer),
* truncation: ``ws_i <- w_avg + psi (ws_i - w_avg)`` for ``i < truncation_cutoff`` (all when None),
  where ``w_avg`` tracks ``w_avg <- beta w_avg + (1 - beta) mean_batch(w)`` while training.

Either input may be empty (``z_dim = 0`` or ``c_dim = 0``), not both: ``c_dim = 0`` is the
unconditional generator, ``z_dim = 0`` the label-only mapping the discriminator uses.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from learned_sampler.validation import check_positive_int
from wysiwyg_gan.networks.layers import EqualizedLinear, check_shape


def normalize_2nd_moment(x: Float[Tensor, "batch features"], eps: float = 1e-8) -> Float[Tensor, "batch features"]:
    """``x / sqrt(mean(x^2) + eps)`` over the feature dimension."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def _check_input(name: str, value: object, dim: int, dim_name: str, batch: int | None) -> Tensor | None:
    """An input of shape ``(batch, dim)``; ``None`` is accepted (and returned) when ``dim == 0``."""
    if value is None:
        if dim > 0:
            raise ValueError(f"{name} is required: {dim_name}={dim}")
        return None
    return check_shape(name, value, [("batch", batch), (dim_name, dim)])


class MappingNetwork(nn.Module):
    """Maps a latent ``z`` and a camera label ``c`` to ``num_ws`` copies of the style ``w``."""

    def __init__(
        self,
        z_dim: int = 512,
        c_dim: int = 25,
        w_dim: int = 512,
        num_ws: int = 14,
        num_layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.998,
    ):
        super().__init__()
        check_positive_int("z_dim", z_dim, minimum=0)
        check_positive_int("c_dim", c_dim, minimum=0)
        check_positive_int("w_dim", w_dim)
        check_positive_int("num_ws", num_ws)
        check_positive_int("num_layers", num_layers)
        if z_dim + c_dim == 0:
            raise ValueError("z_dim and c_dim cannot both be 0")
        if not 0.0 <= w_avg_beta <= 1.0:
            raise ValueError(f"w_avg_beta must be in [0, 1], got {w_avg_beta}")
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.w_avg_beta = w_avg_beta
        self.embed = EqualizedLinear(c_dim, w_dim) if c_dim > 0 else None
        features = z_dim + (w_dim if c_dim > 0 else 0)
        layers = []
        for _ in range(num_layers):
            layers.append(EqualizedLinear(features, w_dim, lr_multiplier=lr_multiplier, activation="lrelu"))
            features = w_dim
        self.layers = nn.ModuleList(layers)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: Float[Tensor, "batch z_dim"] | None,
        c: Float[Tensor, "batch c_dim"] | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> Float[Tensor, "batch num_ws w_dim"]:
        """``z`` may be ``None`` when ``z_dim == 0`` and ``c`` when ``c_dim == 0``."""
        if truncation_cutoff is not None:
            check_positive_int("truncation_cutoff", truncation_cutoff, minimum=0)
        z = _check_input("z", z, self.z_dim, "z_dim", None)
        c = _check_input("c", c, self.c_dim, "c_dim", None if z is None else z.shape[0])

        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z))
        if self.embed is not None:
            parts.append(normalize_2nd_moment(self.embed(c)))
        x = torch.cat(parts, dim=1)
        for layer in self.layers:
            x = layer(x)

        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        ws = x[:, None, :].repeat(1, self.num_ws, 1)
        if truncation_psi != 1.0:
            cutoff = self.num_ws if truncation_cutoff is None else min(truncation_cutoff, self.num_ws)
            truncated = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
            ws = torch.cat([truncated, ws[:, cutoff:]], dim=1)
        return ws

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
