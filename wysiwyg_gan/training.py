"""One training step of the WYSIWYG GAN, and the state a checkpoint holds.

Every step is a pure function of the state and ``(seed, step)``: the global batch's data indices,
latents, cameras and swaps are drawn from a generator seeded by the step, and each micro-batch
reseeds torch's RNG from ``(seed, step, phase, global micro-batch index)``. So a resumed run
continues exactly, and ``N`` processes with one micro-batch each draw exactly what one process
with ``N`` accumulated micro-batches draws (the DDP test relies on it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from learned_sampler import LearnedSampler
from wysiwyg_gan.config import TrainConfig, config_to_json
from wysiwyg_gan.data.dataset import CameraImageDataset
from wysiwyg_gan.distributed import DistributedContext, average_gradients, broadcast_modules
from wysiwyg_gan.losses import (
    decision_boundary_loss,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    r1_penalty,
    surface_tightness_loss,
)
from wysiwyg_gan.networks.discriminator import Discriminator
from wysiwyg_gan.networks.triplane import TriplaneField, TriplaneGenerator
from wysiwyg_gan.rendering import RenderedImages, render_generator
from wysiwyg_gan.schedule import ScheduleState, schedule_at

_MASK64 = (1 << 64) - 1


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (splitmix64 over the parts)."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state ^ (part & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & _MASK64
        state ^= state >> 29
    return state >> 1


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; training stops before applying the update."""


def upsample_to(images: Tensor, resolution: int) -> Tensor:
    """Bilinear resize of rendered images to the discriminator's resolution."""
    if images.shape[-1] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


def blur_to_render_resolution(images: Tensor, render_resolution: int) -> Tensor:
    """Real images seen at the rendering resolution: antialiased downsample, then bilinear upsample
    back (the paper blurs real images "to the same level" as the upsampled renders)."""
    resolution = images.shape[-1]
    if render_resolution >= resolution:
        return images
    low = F.interpolate(images, size=(render_resolution,) * 2, mode="bilinear", antialias=True, align_corners=False)
    return upsample_to(low, resolution)


def load_batch(dataset: CameraImageDataset, indices: Tensor) -> tuple[Tensor, Tensor]:
    """Images ``(B, 3, R, R)`` in [-1, 1] and labels ``(B, 25)`` of ``dataset[indices]``."""
    items = [dataset[int(i)] for i in indices]
    return torch.stack([image for image, _ in items]), torch.stack([label for _, label in items])


@dataclass
class StepStatistics:
    values: dict[str, float]
    schedule: ScheduleState


class GANTrainer:
    """Networks, optimisers and the image count of one run; ``step()`` runs one optimisation step."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: CameraImageDataset,
        device: torch.device,
        context: DistributedContext | None = None,
    ):
        self.config = config
        self.dataset = dataset
        self.device = device
        self.context = context or DistributedContext()
        world = self.context.world_size
        if config.batch % world:
            raise ValueError(f"batch ({config.batch}) must be divisible by the number of processes ({world})")
        per_rank = config.batch // world
        self.batch_per_gpu = config.batch_per_gpu or per_rank
        if per_rank % self.batch_per_gpu:
            raise ValueError(
                f"batch per process ({per_rank}) must be a multiple of batch_per_gpu ({self.batch_per_gpu})"
            )
        self.accumulation = per_rank // self.batch_per_gpu
        full = config.schedule.full_resolution
        if dataset.resolution != full:
            raise ValueError(
                f"the dataset's images are {dataset.resolution}x{dataset.resolution}, the schedule's full "
                f"resolution is {full}: pass a dataset at that size or change --schedule.full-resolution"
            )

        torch.manual_seed(derive_seed(config.seed, 0x1A17))
        self.generator = TriplaneGenerator(config.generator.on_device(device)).to(device)
        self.discriminator = Discriminator(
            c_dim=25,
            img_resolution=full,
            img_channels=3,
            channel_base=config.discriminator.channel_base,
            channel_max=config.discriminator.channel_max,
            mbstd_group_size=config.discriminator.mbstd_group_size,
        ).to(device)
        self.sampler = LearnedSampler(config.sampler).to(device)
        broadcast_modules([self.generator, self.discriminator, self.sampler], self.context)
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)

        optim = config.optim
        mlp_ids = {id(p) for mlp in (self.generator.sdf_mlp, self.generator.color_mlp) for p in mlp.parameters()}
        self.optimizer_g = torch.optim.Adam(
            [
                {"params": [p for p in self.generator.parameters() if id(p) not in mlp_ids], "name": "generator"},
                {"params": list(self.generator.sdf_mlp.parameters()), "name": "sdf_mlp"},
                {"params": list(self.generator.color_mlp.parameters()), "name": "color_mlp"},
            ],
            lr=optim.generator_lr,
            betas=optim.betas,
            eps=1e-8,
        )
        # Lazy regularisation: the R1 steps are folded into Adam's hyper-parameters (StyleGAN2).
        ratio = optim.r1_interval / (optim.r1_interval + 1)
        self.optimizer_d = torch.optim.Adam(
            self.discriminator.parameters(),
            lr=optim.discriminator_lr * ratio,
            betas=(optim.betas[0] ** ratio, optim.betas[1] ** ratio),
            eps=1e-8,
        )
        self.optimizer_sampler = torch.optim.Adam(self.sampler.parameters(), lr=optim.sampler_lr)
        self.images_seen = 0
        self.step_index = 0

    # ----------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "images_seen": self.images_seen,
            "step": self.step_index,
            "generator": self.generator.state_dict(),
            "generator_ema": self.generator_ema.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "sampler": self.sampler.state_dict(),
            "optimizers": {
                "generator": self.optimizer_g.state_dict(),
                "discriminator": self.optimizer_d.state_dict(),
                "sampler": self.optimizer_sampler.state_dict(),
            },
            "rng": rng,
            "config": config_to_json(self.config),
        }

    def load_state_dict(self, state: dict[str, Any], networks_only: bool = False) -> None:
        for name, module in (
            ("generator", self.generator),
            ("generator_ema", self.generator_ema),
            ("discriminator", self.discriminator),
            ("sampler", self.sampler),
        ):
            try:
                module.load_state_dict(state[name])
            except (KeyError, RuntimeError) as error:
                raise ValueError(
                    f"the checkpoint's {name} does not match this configuration (was it trained with another "
                    f"preset or different network sizes?): {error}"
                ) from error
        if networks_only:
            return
        try:
            self.optimizer_g.load_state_dict(state["optimizers"]["generator"])
            self.optimizer_d.load_state_dict(state["optimizers"]["discriminator"])
            self.optimizer_sampler.load_state_dict(state["optimizers"]["sampler"])
        except (KeyError, ValueError) as error:
            raise ValueError(
                "the checkpoint's optimiser state does not match this version's parameter groups (written "
                f"before the decoder MLPs got their own learning rate?); start from its networks with --init-from: {error}"
            ) from error
        self.images_seen = int(state["images_seen"])
        self.step_index = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    # ------------------------------------------------------------------------------ rendering

    def render(
        self,
        generator: TriplaneGenerator,
        z: Tensor,
        render_labels: Tensor,
        condition_labels: Tensor,
        schedule: ScheduleState,
        update_w_avg: bool = False,
        noise_mode: str = "random",
        truncation_psi: float = 1.0,
    ) -> tuple[TriplaneField, RenderedImages, dict[str, Tensor]]:
        """The field of ``z``, its images from ``render_labels`` in the schedule's mode, and, when
        gradients are on, L_dec and (while the schedule supervises the sampler) the sampler's loss.
        The probe and CNN run only when their output is used."""
        config = self.config
        field = generator(z, condition_labels, truncation_psi=truncation_psi, noise_mode=noise_mode, update_w_avg=update_w_avg)
        training = torch.is_grad_enabled()
        images = render_generator(
            field,
            render_labels,
            schedule.render_resolution,
            self.sampler,
            config.render,
            learned=schedule.render_with_sampler,
            proposal_resolution=config.schedule.full_resolution,
            supervise_sampler=schedule.supervise_sampler and training,
            probe_gradients=training,
            stratified=self.sampler.training,
        )
        losses: dict[str, Tensor] = {}
        if images.sampler_loss is not None:
            losses["sampler"] = images.sampler_loss
        if training:
            free_space = images.uniform_free_space if config.loss.decision_free_space else None
            losses["decision"] = decision_boundary_loss(images.uniform_sdf, config.loss.decision_sharpness, free_space)
        return field, images, losses

    # ---------------------------------------------------------------------------------- step

    def _micro_batches(self) -> list[tuple[int, slice]]:
        size = self.batch_per_gpu
        out = []
        for m in range(self.accumulation):
            index = self.context.rank * self.accumulation + m
            out.append((index, slice(index * size, (index + 1) * size)))
        return out

    def _check_finite(self, losses: dict[str, Tensor]) -> None:
        for name, value in losses.items():
            if not bool(torch.isfinite(value.detach()).all()):
                raise NonFiniteLossError(
                    f"loss {name!r} is {value.item()} at step {self.step_index} ({self.images_seen} images); "
                    "the update was not applied"
                )

    def step(self) -> StepStatistics:
        """One optimisation step of G (and the proposal CNN), then of D, then the EMA of G."""
        config = self.config
        schedule = schedule_at(self.images_seen, config.schedule)
        device = self.device
        multipliers = {
            "generator": 1.0,
            "sdf_mlp": config.optim.mlp_lr_multiplier,
            "color_mlp": config.optim.mlp_lr_multiplier * schedule.color_lr_multiplier,
        }
        for group in self.optimizer_g.param_groups:
            group["lr"] = config.optim.generator_lr * multipliers[group["name"]]

        draws = torch.Generator().manual_seed(derive_seed(config.seed, self.step_index))
        batch, num_labels = config.batch, len(self.dataset)
        real_index = torch.randint(num_labels, (batch,), generator=draws)
        z = {phase: torch.randn(batch, config.generator.z_dim, generator=draws) for phase in ("g", "d")}
        render_labels, condition_labels = {}, {}
        for phase in ("g", "d"):
            labels = self.dataset.labels[torch.randint(num_labels, (batch,), generator=draws)]
            swap = torch.rand(batch, generator=draws) < schedule.swap_probability
            render_labels[phase] = labels
            condition_labels[phase] = torch.where(swap[:, None], labels.roll(1, dims=0), labels)
        values: dict[str, float] = {}
        accumulate = 1.0 / self.accumulation

        # Generator and sampler.
        self.generator.requires_grad_(True)
        self.discriminator.requires_grad_(False)
        self.optimizer_g.zero_grad(set_to_none=True)
        self.optimizer_sampler.zero_grad(set_to_none=True)
        samples_per_ray = 0.0
        for index, part in self._micro_batches():
            torch.manual_seed(derive_seed(config.seed, self.step_index, 1, index))
            labels = render_labels["g"][part].to(device)
            _, images, losses = self.render(
                self.generator, z["g"][part].to(device), labels, condition_labels["g"][part].to(device), schedule, update_w_avg=True
            )
            logits = self.discriminator(upsample_to(images.image, config.schedule.full_resolution), labels)
            losses["g_adv"] = generator_adversarial_loss(logits)
            losses["surface"] = surface_tightness_loss(images.surface_variance, images.opacity, schedule.beta_target)
            self._check_finite(losses)
            total = (
                losses["g_adv"]
                + config.loss.decision_weight * losses["decision"]
                + losses.get("sampler", torch.zeros((), device=device))
            )
            if config.loss.beta_regularisation:
                total = total + config.loss.surface_weight * losses["surface"]
            (total * accumulate).backward()
            samples_per_ray += images.samples_per_ray * accumulate
            for name, value in losses.items():
                values[name] = values.get(name, 0.0) + float(value.detach()) * accumulate
        average_gradients([self.generator, self.sampler], self.context)
        self.optimizer_g.step()
        if schedule.supervise_sampler:
            self.optimizer_sampler.step()

        # Discriminator, with lazy R1 on the real images.
        self.generator.requires_grad_(False)
        self.discriminator.requires_grad_(True)
        self.optimizer_d.zero_grad(set_to_none=True)
        do_r1 = schedule.r1_gamma > 0 and self.step_index % config.optim.r1_interval == 0
        for index, part in self._micro_batches():
            torch.manual_seed(derive_seed(config.seed, self.step_index, 2, index))
            labels = render_labels["d"][part].to(device)
            with torch.no_grad():
                _, images, _ = self.render(self.generator, z["d"][part].to(device), labels, condition_labels["d"][part].to(device), schedule)
            fake_logits = self.discriminator(upsample_to(images.image, config.schedule.full_resolution), labels)
            reals, real_labels = load_batch(self.dataset, real_index[part])
            reals = blur_to_render_resolution(reals.to(device), schedule.render_resolution).detach()
            reals.requires_grad_(do_r1)
            real_logits = self.discriminator(reals, real_labels.to(device))
            losses = {"d_adv": discriminator_adversarial_loss(real_logits, fake_logits)}
            total = losses["d_adv"]
            if do_r1:
                losses["r1"] = r1_penalty(real_logits, reals)
                total = total + losses["r1"] * (schedule.r1_gamma / 2) * config.optim.r1_interval
            self._check_finite(losses)
            (total * accumulate).backward()
            for name, value in losses.items():
                values[name] = values.get(name, 0.0) + float(value.detach()) * accumulate
        average_gradients([self.discriminator], self.context)
        self.optimizer_d.step()
        self.generator.requires_grad_(True)

        self._update_ema()
        self.images_seen += batch
        self.step_index += 1
        values["samples_per_ray"] = samples_per_ray
        values["render_resolution"] = float(schedule.render_resolution)
        return StepStatistics(values=values, schedule=schedule)

    @torch.no_grad()
    def _update_ema(self) -> None:
        optim = self.config.optim
        half_life = float(optim.ema_images)
        if optim.ema_rampup is not None:
            half_life = min(half_life, self.images_seen * optim.ema_rampup)
        beta = 0.5 ** (self.config.batch / max(half_life, 1e-8))
        for ema, live in zip(self.generator_ema.parameters(), self.generator.parameters()):
            ema.copy_(live.detach().lerp(ema, beta))
        for ema, live in zip(self.generator_ema.buffers(), self.generator.buffers()):
            ema.copy_(live)
