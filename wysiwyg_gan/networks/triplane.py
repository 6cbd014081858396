"""The triplane generator (paper §3, §4.1): mapping -> backbone T' -> one block per plane -> T -> field.

A point's features are the Hadamard product of its bilinearly sampled features on the xy, xz and
yz planes (K-Planes style; EG3D averages, and its third projection is (z, x) instead of (y, z),
a known quirk fixed here). ``MLP_SDF`` turns the encoded position and the features into
``(s, beta, f_geo)``, ``MLP_c`` the encoded view direction and ``f_geo`` into a colour; the density
is VolSDF's (``learned_sampler.volsdf_density``), with ``s`` positive outside.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from learned_sampler import volsdf_density
from wysiwyg_gan.networks.mapping import MappingNetwork
from wysiwyg_gan.networks.mlp import MLP, MLPBackend, encoding_size, positional_encoding, to_backend
from wysiwyg_gan.networks.synthesis import SynthesisBlock, SynthesisNetwork

BETA_MIN = 1e-4
BETA_INIT = 0.01


def beta_from_logits(beta_pre: Tensor) -> Tensor:
    """The paper's ``beta = 0.01 + tanh(2 beta_pre) (0.01 - 0.0001)``: in (1e-4, 0.0199), 0.01 at 0."""
    return BETA_INIT + torch.tanh(2.0 * beta_pre) * (BETA_INIT - BETA_MIN)


def rgb_from_logits(rgb_pre: Tensor) -> Tensor:
    """The paper's clamp ``sigmoid(c) (1 + 0.002) - 0.001`` (lets the colour reach 0 and 1)."""
    return torch.sigmoid(rgb_pre) * 1.002 - 0.001


def sample_triplane(
    planes: Float[Tensor, "batch 3 channels res res"],
    points: Float[Tensor, "batch num_points 3"],
    box_size: float,
) -> Float[Tensor, "batch num_points channels"]:
    """Product of the bilinear features of ``points`` projected on the xy, xz and yz planes.

    The planes span ``[-box_size/2, box_size/2]^2``; outside it the features are zero.
    """
    if planes.dim() != 5 or planes.shape[1] != 3:
        raise ValueError(f"planes must have shape (B, 3, C, R, R), got {tuple(planes.shape)}")
    if points.dim() != 3 or points.shape[0] != planes.shape[0] or points.shape[-1] != 3:
        raise ValueError(f"points must have shape ({planes.shape[0]}, N, 3), got {tuple(points.shape)}")
    coords = points * (2.0 / box_size)
    features = None
    for plane_index, axes in enumerate(((0, 1), (0, 2), (1, 2))):
        grid = coords[..., axes][:, None]  # (B, 1, N, 2): grid_sample reads (x, y) = (width, height)
        sampled = F.grid_sample(planes[:, plane_index], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled[:, :, 0].transpose(1, 2)
        features = sampled if features is None else features * sampled
    return features


@dataclass
class GeneratorConfig:
    """Sizes of the triplane generator; the defaults are the paper's FFHQ-512 generator."""

    z_dim: int = 512
    """Latent size."""
    w_dim: int = 512
    """Intermediate latent size."""
    c_dim: int = 25
    """Camera label size for pose conditioning (16 cam2world + 9 intrinsics); 0 disables it."""
    mapping_layers: int = 2
    """Layers of the mapping network (EG3D: 2)."""
    backbone_resolution: int = 256
    """Resolution of the backbone's triplane T' (not stated by the paper; EG3D's 256)."""
    channel_base: int = 65536
    """StyleGAN2 channel base of the backbone (paper: twice EG3D's 32768)."""
    channel_max: int = 512
    """Most channels of any backbone layer."""
    plane_channels: int = 32
    """Feature channels per plane (paper: 32)."""
    plane_block_channels: int = 128
    """Hidden channels of the three per-plane synthesis blocks T' -> T (not stated by the paper)."""
    box_size: float = 1.0
    """Side of the cube the triplanes span, centred at the origin (EG3D's box_warp)."""
    sdf_hidden: int = 128
    """Width of MLP_SDF's hidden layers (paper: 128)."""
    sdf_layers: int = 2
    """Hidden layers of MLP_SDF (paper: 2)."""
    geometry_features: int = 64
    """Size of f_geo, the features MLP_SDF passes to MLP_c (paper: 64)."""
    position_frequencies: int = 6
    """Frequencies of the position encoding (paper: 6, 39 values)."""
    color_hidden: int = 64
    """Width of MLP_c's hidden layer (paper: 64)."""
    color_layers: int = 1
    """Hidden layers of MLP_c (paper: 1)."""
    view_frequencies: int = 2
    """Frequencies of the view-direction encoding (paper: 2, 15 values)."""
    noise_inputs: bool = True
    """StyleGAN's per-pixel noise inputs in the synthesis layers (EG3D keeps them). In a triplane
    they become a fixed 3D texture of bumps: False leaves them out, and ``noise_mode`` is then
    ignored."""
    view_dependent: bool = True
    """MLP_c reads the encoded view direction (the paper). False makes the colour diffuse (MLP_c
    reads f_geo only): on data without view effects, a view-dependent colour lets the generator
    vary an object's colour with the camera instead of its shape with the latent."""
    sphere_radius: float = 0.3
    """Radius of the sphere the SDF starts as (SAL initialisation; not stated by the paper)."""
    feature_init_std: float = 1e-3
    """Initial std of MLP_SDF's weights on the triplane features: larger lets latents deform the
    initial sphere more (more diverse shapes from the start), smaller keeps it rounder."""
    mlp_backend: MLPBackend = "auto"
    """MLPs in torch, in tiny-cuda-nn (``tcnn``), or tcnn when it and CUDA are present (``auto``)."""

    def on_device(self, device: torch.device | str) -> GeneratorConfig:
        """This configuration with ``mlp_backend="auto"`` resolved for ``device``: tiny-cuda-nn only
        runs on CUDA, so anywhere else the MLPs are torch's (checkpoints load into either)."""
        if self.mlp_backend == "auto" and torch.device(device).type != "cuda":
            return dataclasses.replace(self, mlp_backend="torch")
        return self

    @property
    def plane_resolution(self) -> int:
        """Resolution of the final triplane T: the per-plane blocks upsample T' by 2."""
        return 2 * self.backbone_resolution


class TriplaneField:
    """The radiance field of a batch of triplanes, in the ``learned_sampler`` field interface.

    ``field(positions (B, ..., S, 3), directions) -> {density, rgb, sdf, beta}``; image ``b`` of
    the rays uses triplane ``b``.
    """

    def __init__(self, generator: TriplaneGenerator, planes: Float[Tensor, "batch 3 channels res res"]):
        self.generator = generator
        self.planes = planes

    def expand(self, count: int) -> TriplaneField:
        """The field of a single latent repeated ``count`` times (one per camera of a batch)."""
        if self.planes.shape[0] != 1:
            raise ValueError(f"only a field of one latent can be expanded, this one has {self.planes.shape[0]}")
        return TriplaneField(self.generator, self.planes.expand(count, -1, -1, -1, -1))

    def sdf_outputs(self, positions: Float[Tensor, "batch *points 3"]) -> tuple[Tensor, Tensor, Tensor]:
        """``(sdf, beta, f_geo)`` at ``positions``; their first dimension indexes the triplanes."""
        shape = positions.shape[:-1]
        flat = positions.reshape(self.planes.shape[0], -1, 3)
        config = self.generator.config
        features = sample_triplane(self.planes, flat, config.box_size)
        out = self.generator.sdf_mlp(torch.cat([positional_encoding(flat, config.position_frequencies), features], -1))
        sdf = out[..., 0].reshape(shape)
        beta = beta_from_logits(out[..., 1]).reshape(shape)
        return sdf, beta, out[..., 2:].reshape(*shape, -1)

    def __call__(self, positions: Tensor, directions: Tensor) -> dict[str, Tensor]:
        sdf, beta, geometry = self.sdf_outputs(positions)
        config = self.generator.config
        if config.view_dependent:
            geometry = torch.cat([positional_encoding(directions, config.view_frequencies), geometry], dim=-1)
        rgb = rgb_from_logits(self.generator.color_mlp(geometry))
        return {"density": volsdf_density(sdf, beta), "rgb": rgb, "sdf": sdf, "beta": beta}

    def normals(self, positions: Float[Tensor, "batch *points 3"]) -> Float[Tensor, "batch *points 3"]:
        """Unit SDF gradients at ``positions`` (outward), without keeping a graph."""
        with torch.enable_grad():
            points = positions.detach().requires_grad_(True)
            sdf = self.sdf_outputs(points)[0]
            (gradient,) = torch.autograd.grad(sdf.sum(), points)
        return F.normalize(gradient, dim=-1)


class TriplaneGenerator(nn.Module):
    """``(z, c) -> ws -> triplanes -> TriplaneField``."""

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = config = config or GeneratorConfig()
        self.backbone = SynthesisNetwork(
            w_dim=config.w_dim,
            img_resolution=config.backbone_resolution,
            img_channels=3 * config.plane_channels,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
        )
        self.plane_blocks = nn.ModuleList(
            SynthesisBlock(
                config.plane_channels,
                config.plane_block_channels,
                w_dim=config.w_dim,
                resolution=config.plane_resolution,
                img_channels=config.plane_channels,
                is_last=True,
            )
            for _ in range(3)
        )
        block = self.plane_blocks[0]
        self.plane_block_ws = block.num_conv + block.num_torgb
        self.mapping = MappingNetwork(
            z_dim=config.z_dim,
            c_dim=config.c_dim,
            w_dim=config.w_dim,
            num_ws=self.backbone.num_ws + self.plane_block_ws,
            num_layers=config.mapping_layers,
        )
        sdf_mlp = MLP(
            encoding_size(config.position_frequencies) + config.plane_channels,
            config.sdf_hidden,
            config.sdf_layers,
            2 + config.geometry_features,
            "relu",
        )
        sdf_mlp.init_sphere(config.sphere_radius, encoding_size(config.position_frequencies), config.feature_init_std)
        view_inputs = encoding_size(config.view_frequencies) if config.view_dependent else 0
        color_mlp = MLP(
            view_inputs + config.geometry_features,
            config.color_hidden,
            config.color_layers,
            3,
            "softplus",
        )
        # Unit-scale f_geo through unit-gain layers: the colour varies with the latent from the
        # first step (with torch's default initialisation it starts the same grey for every latent).
        color_mlp.init_lecun()
        with torch.no_grad():
            # Colour starts view-independent: view effects are learned where the data shows them,
            # instead of every view getting its own colour while the latents still look alike.
            color_mlp.layers[0].weight[:, :view_inputs] = 0.0
        self.sdf_mlp = to_backend(sdf_mlp, config.mlp_backend)
        self.color_mlp = to_backend(color_mlp, config.mlp_backend)

    @property
    def num_ws(self) -> int:
        return self.mapping.num_ws

    def synthesize_planes(
        self, ws: Float[Tensor, "batch num_ws w_dim"], noise_mode: str = "random"
    ) -> Float[Tensor, "batch 3 channels res res"]:
        """The final triplane T: backbone T', then one synthesis block per 32-channel slice."""
        if not self.config.noise_inputs:
            noise_mode = "none"
        backbone_ws = ws[:, : self.backbone.num_ws]
        block_ws = ws[:, self.backbone.num_ws :]
        coarse = self.backbone(backbone_ws, noise_mode=noise_mode)
        slices = coarse.reshape(coarse.shape[0], 3, self.config.plane_channels, *coarse.shape[-2:])
        planes = []
        for index, block in enumerate(self.plane_blocks):
            # f_ij = SynthesisBlock(f'_ij): the plane is the block's own ToRGB output. Not adding the
            # upsampled slice (a skip) keeps each plane at unit scale, so the product of the three
            # stays near unit scale too instead of amplifying the backbone's accumulated skips.
            _, plane = block(slices[:, index], None, block_ws, noise_mode=noise_mode)
            planes.append(plane)
        return torch.stack(planes, dim=1)

    def synthesize(self, ws: Float[Tensor, "batch num_ws w_dim"], noise_mode: str = "random") -> TriplaneField:
        """The field of ``ws``."""
        return TriplaneField(self, self.synthesize_planes(ws, noise_mode=noise_mode))

    def forward(
        self,
        z: Float[Tensor, "batch z_dim"],
        c: Float[Tensor, "batch c_dim"],
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        update_w_avg: bool = False,
    ) -> TriplaneField:
        """The field of latents ``z`` conditioned on cameras ``c`` (render it with ``wysiwyg_gan.rendering``)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_w_avg=update_w_avg)
        return self.synthesize(ws, noise_mode=noise_mode)
