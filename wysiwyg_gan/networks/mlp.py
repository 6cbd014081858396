"""The decoder MLPs of the triplane field (paper Tables A1, A2) and their fused twin.

``MLP_SDF(PosEnc(x), T_x) -> (s, beta_pre, f_geo)`` and ``MLP_c(PosEnc(v), f_geo) -> rgb``.

Both are written as ``MLP``: bias-free hidden layers, a constant 1 appended to the input (so the
first layer has an effective bias) and a bias on the output. That is exactly the function class of
tiny-cuda-nn's fully fused networks (which have no biases), so ``TcnnMLP`` can hold the same
weights and the torch module is the reference the tests compare it against. Choices the paper
leaves open or contradicts:

* MLP_SDF uses ReLU, as the text says ("We initialize the ReLU MLP_SDF as in SAL"); Table A1 lists
  Softplus, but SAL's geometric initialisation gives a sphere for ReLU networks. MLP_c uses
  Softplus (Table A2).
* SAL initialisation (``init_sphere``): the network starts as roughly ``|x| - radius`` (a random
  ReLU network of this width gives a blob whose radius varies by about +-40 % with the direction;
  its mean radius is made exact). The weights that read the encoding's sine/cosine terms start at
  zero and those of the triplane features nearly so, so the random initial planes only dent it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

Activation = Literal["relu", "softplus"]
MLPBackend = Literal["auto", "torch", "tcnn"]

GEOMETRY_FEATURE_STD = 0.3
"""Initial std of f_geo from the position alone (``MLP.init_sphere``): at 1, the colour's start
dominated the early updates and the shapes varied less between latents (benchmarks/RESULTS.md)."""


def positional_encoding(x: Float[Tensor, "*batch 3"], num_frequencies: int) -> Float[Tensor, "*batch encoded"]:
    """NeRF encoding ``[x, sin(2^k pi x), cos(2^k pi x)]`` for ``k < num_frequencies``: ``3 + 6 L`` values."""
    if num_frequencies == 0:
        return x
    frequencies = math.pi * 2.0 ** torch.arange(num_frequencies, dtype=x.dtype, device=x.device)
    angles = (x[..., None, :] * frequencies[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


def encoding_size(num_frequencies: int) -> int:
    return 3 + 6 * num_frequencies


class MLP(nn.Module):
    """``in_dim -> hidden_dim x num_hidden -> out_dim`` with ``activation`` between layers.

    Hidden layers have no bias; a constant 1 is appended to the input (the first layer's bias)
    and the output has a bias: the layout of tiny-cuda-nn's fused MLPs (see the module docstring).
    """

    def __init__(self, in_dim: int, hidden_dim: int, num_hidden: int, out_dim: int, activation: Activation):
        super().__init__()
        if num_hidden < 1:
            raise ValueError(f"num_hidden must be >= 1, got {num_hidden}")
        if activation not in ("relu", "softplus"):
            raise ValueError(f"activation must be 'relu' or 'softplus', got {activation!r}")
        self.in_dim, self.hidden_dim, self.num_hidden, self.out_dim = in_dim, hidden_dim, num_hidden, out_dim
        self.activation = activation
        sizes = [in_dim + 1] + [hidden_dim] * num_hidden + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))
        self.output_bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, x: Float[Tensor, "*batch in_dim"]) -> Float[Tensor, "*batch out_dim"]:
        x = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)
        act = F.relu if self.activation == "relu" else F.softplus
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x) + self.output_bias

    @torch.no_grad()
    def init_sphere(self, radius: float, encoding_inputs: int, feature_std: float = 1e-3) -> None:
        """SAL geometric initialisation: output 0 approximates ``|x| - radius`` for ReLU networks.

        The input is ``[PosEnc(x) (encoding_inputs values, raw xyz first), features]``. Only xyz
        is read at first; the encoding's sine/cosine weights start at zero and the feature weights
        at ``feature_std``: small enough to keep the sphere (unit-scale features move the surface
        by a few hundredths), large enough that latents shape the field from the first step.
        """
        for layer in self.layers[:-1]:
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0) / math.sqrt(layer.out_features))
        first = self.layers[0].weight
        first[:, 3:] = 0.0
        first[:, encoding_inputs : self.in_dim].normal_(0.0, feature_std)
        last = self.layers[-1]
        nn.init.zeros_(last.weight)
        last.weight[0].normal_(math.sqrt(math.pi) / math.sqrt(last.in_features), 1e-4)
        # beta_pre starts near 0 (beta ~ 0.01, as the paper says).
        last.weight[1].normal_(0.0, 1e-2 / math.sqrt(last.in_features))
        last.weight[2:].normal_(0.0, 1.0 / math.sqrt(last.in_features))
        # With zero biases the network is positively homogeneous in xyz, so it equals
        # |x| g(x / |x|) - radius; rescale so g averages exactly 1 over directions.
        directions = torch.randn(4096, 3, generator=torch.Generator().manual_seed(0))
        directions = directions / directions.norm(dim=-1, keepdim=True)
        inputs = torch.zeros(4096, self.in_dim, dtype=directions.dtype, device=first.device)
        inputs[:, :3] = directions.to(first.device)
        self.output_bias.zero_()
        last.weight[0] /= self(inputs)[:, 0].mean()
        self.output_bias[0] = -radius
        # The hidden units are small here (~|x| / sqrt(width)), so f_geo would start at ~0.05 and
        # MLP_c would give every latent the same grey, which it then keeps. Scale f_geo to a std of
        # GEOMETRY_FEATURE_STD over points around the sphere (the triplane features add as much).
        points = torch.randn(4096, 3, generator=torch.Generator().manual_seed(1)).to(first.device)
        inputs = torch.zeros(4096, self.in_dim, dtype=points.dtype, device=first.device)
        inputs[:, :3] = points * (radius / math.sqrt(3.0))
        last.weight[2:] *= GEOMETRY_FEATURE_STD / self(inputs)[:, 2:].std()

    @torch.no_grad()
    def init_lecun(self) -> None:
        """Weights ~ N(0, 1 / fan-in) (LeCun), zero output bias: unit-scale inputs give outputs of
        about unit scale, where torch's default ``nn.Linear`` initialisation shrinks them by
        about sqrt(3) per layer."""
        for layer in self.layers:
            nn.init.normal_(layer.weight, 0.0, 1.0 / math.sqrt(layer.in_features))
        self.output_bias.zero_()


def _tcnn_available() -> bool:
    try:
        import tinycudann  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def fused_layout(in_dim: int, hidden_dim: int, out_dim: int) -> tuple[int, int, int]:
    """tiny-cuda-nn's padding of an ``MLP``: ``(alignment, padded input width, padded output width)``.

    FullyFusedMLP (hidden widths 16, 32, 64, 128) pads the input (with its appended 1) and the
    output to multiples of 16, CutlassMLP to multiples of 8."""
    alignment = 16 if hidden_dim in (16, 32, 64, 128) else 8
    padded_in = -(-(in_dim + 1) // alignment) * alignment
    padded_out = -(-out_dim // alignment) * alignment
    return alignment, padded_in, padded_out


def pack_fused_weights(weights: list[Tensor], in_dim: int, hidden_dim: int, out_dim: int) -> Float[Tensor, "num_params"]:
    """``MLP`` layer weights (``(out, in)`` each, the first with the appended 1) as tiny-cuda-nn's flat
    parameter vector: the padded matrices one after the other, row-major, padding zeroed (some
    tiny-cuda-nn versions fill padded inputs with 1 and others with 0)."""
    _, padded_in, padded_out = fused_layout(in_dim, hidden_dim, out_dim)
    blocks = []
    for index, weight in enumerate(weights):
        rows = padded_out if index == len(weights) - 1 else hidden_dim
        cols = padded_in if index == 0 else hidden_dim
        padded = weight.new_zeros(rows, cols)
        padded[: weight.shape[0], : weight.shape[1]] = weight
        blocks.append(padded.flatten())
    return torch.cat(blocks)


def unpack_fused_weights(params: Tensor, in_dim: int, hidden_dim: int, num_hidden: int, out_dim: int) -> list[Tensor]:
    """The inverse of ``pack_fused_weights``: ``MLP``'s layer weights from the flat vector."""
    _, padded_in, padded_out = fused_layout(in_dim, hidden_dim, out_dim)
    shapes = [(hidden_dim, padded_in)] + [(hidden_dim, hidden_dim)] * (num_hidden - 1) + [(padded_out, hidden_dim)]
    expected = sum(rows * cols for rows, cols in shapes)
    if params.numel() != expected:
        raise ValueError(f"a fused MLP of this size has {expected} parameters, got {params.numel()}")
    weights, offset = [], 0
    for index, (rows, cols) in enumerate(shapes):
        block = params[offset : offset + rows * cols].reshape(rows, cols)
        offset += rows * cols
        if index == 0:
            block = block[:, : in_dim + 1]
        if index == len(shapes) - 1:
            block = block[:out_dim]
        weights.append(block)
    return weights


class TcnnMLP(nn.Module):
    """tiny-cuda-nn fused twin of ``MLP`` (same function class; half-precision matmuls inside).

    ``load_from(mlp)`` copies a torch ``MLP``'s weights so both compute the same function. Its state
    dict has ``MLP``'s keys and shapes (``layers.N.weight``, ``output_bias``), converted from and to
    tiny-cuda-nn's flat vector, so a checkpoint trained with either backend loads into the other
    (e.g. on a machine without CUDA).
    """

    def __init__(self, in_dim: int, hidden_dim: int, num_hidden: int, out_dim: int, activation: Activation):
        super().__init__()
        import tinycudann as tcnn

        self.in_dim, self.hidden_dim, self.num_hidden, self.out_dim = in_dim, hidden_dim, num_hidden, out_dim
        fully_fused = fused_layout(in_dim, hidden_dim, out_dim)[0] == 16
        self.network = tcnn.Network(
            n_input_dims=in_dim + 1,
            n_output_dims=out_dim,
            network_config={
                "otype": "FullyFusedMLP" if fully_fused else "CutlassMLP",
                "activation": "ReLU" if activation == "relu" else "Softplus",
                "output_activation": "None",
                "n_neurons": hidden_dim,
                "n_hidden_layers": num_hidden,
            },
        )
        self.output_bias = nn.Parameter(torch.zeros(out_dim))
        self._register_state_dict_hook(TcnnMLP._state_dict_as_mlp)
        self.register_load_state_dict_pre_hook(TcnnMLP._state_dict_from_mlp)

    def forward(self, x: Float[Tensor, "*batch in_dim"]) -> Float[Tensor, "*batch out_dim"]:
        shape = x.shape[:-1]
        flat = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1).reshape(-1, self.in_dim + 1)
        out = self.network(flat).float()
        return out.reshape(*shape, self.out_dim) + self.output_bias

    def _sizes(self) -> tuple[int, int, int, int]:
        return self.in_dim, self.hidden_dim, self.num_hidden, self.out_dim

    @staticmethod
    def _state_dict_as_mlp(module: TcnnMLP, state_dict: dict, prefix: str, local_metadata: dict) -> None:
        params = state_dict.pop(prefix + "network.params")
        for index, weight in enumerate(unpack_fused_weights(params.float(), *module._sizes())):
            state_dict[prefix + f"layers.{index}.weight"] = weight.clone()

    def _state_dict_from_mlp(self, state_dict: dict, prefix: str, *args) -> None:
        keys = [prefix + f"layers.{index}.weight" for index in range(self.num_hidden + 1)]
        if all(key in state_dict for key in keys):
            weights = [state_dict.pop(key) for key in keys]
            packed = pack_fused_weights(weights, self.in_dim, self.hidden_dim, self.out_dim)
            state_dict[prefix + "network.params"] = packed.to(self.network.params)

    @torch.no_grad()
    def load_from(self, mlp: MLP) -> None:
        """Copy the weights of a torch ``MLP`` into tiny-cuda-nn's flat, padded parameter vector."""
        params = pack_fused_weights([layer.weight for layer in mlp.layers], self.in_dim, self.hidden_dim, self.out_dim)
        if params.numel() != self.network.params.numel():
            raise RuntimeError(
                f"tiny-cuda-nn expects {self.network.params.numel()} parameters, the layout gives {params.numel()}"
            )
        self.network.params.copy_(params.to(self.network.params))
        self.output_bias.copy_(mlp.output_bias)


def to_backend(mlp: MLP, backend: MLPBackend = "auto") -> nn.Module:
    """``mlp`` itself (``backend="torch"``), or its fused twin holding the same weights (``"tcnn"``;
    ``"auto"`` picks it when tiny-cuda-nn and CUDA are present)."""
    if backend not in ("auto", "torch", "tcnn"):
        raise ValueError(f"mlp backend must be 'auto', 'torch' or 'tcnn', got {backend!r}")
    if backend == "tcnn" and not _tcnn_available():
        raise RuntimeError("mlp backend 'tcnn' needs the tinycudann package and a CUDA device; use 'torch' or 'auto'")
    if backend == "torch" or not _tcnn_available():
        return mlp
    # tiny-cuda-nn builds on the current CUDA device (the trainer selects the run's device first).
    device = torch.device("cuda", torch.cuda.current_device())
    fused = TcnnMLP(mlp.in_dim, mlp.hidden_dim, mlp.num_hidden, mlp.out_dim, mlp.activation).to(device)
    fused.load_from(mlp)
    return fused
