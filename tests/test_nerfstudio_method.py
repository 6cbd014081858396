"""``ns-train wysiwyg-sampler``: discovery, training on a tiny generated scene, image rendering, ns-eval.

The scene is a 32x32 Blender-format rendering of the analytic occluder scene (exact ground truth),
written to a temporary directory once per module. Everything runs on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("nerfstudio", reason="needs the [nerfstudio] extra")
import torch  # noqa: E402

pytestmark = pytest.mark.nerfstudio

RESOLUTION = 32
SAMPLER_RAYS_PER_BATCH = 512  # two 16x16 patches
FIELD_RAYS_PER_BATCH = 512


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory) -> Path:
    from wysiwyg_nerfstudio.synthetic_scenes import write_blender_scene

    directory = tmp_path_factory.mktemp("occluder_scene")
    return write_blender_scene(directory, "occluder", RESOLUTION, num_train=6, num_val=1, num_test=1, reference_samples=256)


def cpu_sized(config, data: Path):
    """The method's config shrunk for a quick CPU run on ``data``."""
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.train_num_rays_per_batch = FIELD_RAYS_PER_BATCH
    config.pipeline.datamanager.sampler_rays_per_batch = SAMPLER_RAYS_PER_BATCH
    config.pipeline.datamanager.eval_num_rays_per_batch = SAMPLER_RAYS_PER_BATCH
    model = config.pipeline.model
    model.implementation = "torch"
    model.log2_hashmap_size = 12
    model.max_res = 64
    model.num_levels = 8
    return config


def training_pipeline(config):
    """The pipeline set up for training as nerfstudio's Trainer does it, and a function that runs
    its callbacks before a training iteration (the model's fills the field-ray pool)."""
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation

    pipeline = config.pipeline.setup(device="cpu", test_mode="val", world_size=1, local_rank=0)
    callbacks = pipeline.get_training_callbacks(
        TrainingCallbackAttributes(optimizers=None, grad_scaler=None, pipeline=pipeline, trainer=None)
    )
    pipeline.train()

    def before_iteration(step: int) -> None:
        for callback in callbacks:
            callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)

    return pipeline, before_iteration


def test_blender_scene_files(tiny_scene):
    transforms = json.loads((tiny_scene / "transforms_train.json").read_text())
    assert len(transforms["frames"]) == 6 and transforms["camera_angle_x"] > 0
    frame = transforms["frames"][0]
    with Image.open(tiny_scene / f"{frame['file_path']}.png") as image:
        assert image.mode == "RGBA" and image.size == (RESOLUTION, RESOLUTION)
    pose = torch.tensor(frame["transform_matrix"])
    assert pose.shape == (4, 4)
    # OpenGL camera looking at the origin: its -z axis points from the camera towards the scene.
    towards_origin = -pose[:3, 3] / pose[:3, 3].norm()
    assert torch.dot(-pose[:3, 2], towards_origin) > 0.999


def test_reference_renders_in_chunks_equal_one_render():
    """Chunks of a few rows of one image at a time (bounded memory) join into the whole render."""
    from wysiwyg_nerfstudio import synthetic_scenes

    rays = synthetic_scenes.reference_rays(synthetic_scenes.orbit_poses(2, seed=3), 8)
    origins = synthetic_scenes.render_image_chunks(rays, lambda chunk: chunk.origins + chunk.directions, rays_per_chunk=3 * 8)
    torch.testing.assert_close(origins, rays.origins + rays.directions, rtol=0, atol=0)


def test_blender_scene_images_have_straight_alpha():
    """RGBA as the Blender synthetic scenes: composited over white they are the render over white."""
    import learned_sampler as ls
    from wysiwyg_nerfstudio import synthetic_scenes

    field = synthetic_scenes.scaled_scene_field("occluder")
    pose = synthetic_scenes.orbit_poses(1, seed=3)
    rgba = synthetic_scenes.render_reference(field, pose, 16, reference_samples=256)
    assert rgba.shape == (1, 16, 16, 4)
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    assert float(alpha.min()) < 1e-3 and float(alpha.max()) > 0.99  # background and opaque surface
    rays = synthetic_scenes.reference_rays(pose, 16)
    over_white = ls.render(rays, ls.uniform_intervals(rays.nears, rays.fars, 256, stratified=False), field, background=1.0).rgb
    torch.testing.assert_close(rgb * alpha + (1 - alpha), over_white, atol=1e-5, rtol=0)
    assert bool(torch.isfinite(rgba).all())  # no 0/0 where the opacity vanishes


def test_entry_point_registers_the_method():
    from nerfstudio.plugins.registry import discover_methods

    methods, descriptions = discover_methods()
    assert "wysiwyg-sampler" in methods
    config = methods["wysiwyg-sampler"]
    assert config.method_name == "wysiwyg-sampler"
    assert "learned" in descriptions["wysiwyg-sampler"]
    # Every param group of the model needs an optimiser entry.
    assert {"fields", "learned_sampler", "camera_opt"} <= set(config.optimizers)


def test_registration_module_is_import_light():
    code = (
        "import sys, wysiwyg_nerfstudio.registration as r; "
        "assert 'nerfstudio.configs.method_configs' not in sys.modules, 'imports method_configs'; "
        "print(r.wysiwyg_sampler.config.method_name)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("wysiwyg-sampler")


def test_training_lowers_the_loss_and_renders_a_camera(tiny_scene):
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
    from nerfstudio.engine.optimizers import Optimizers

    from wysiwyg_nerfstudio.model import WysiwygSamplerModel
    from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

    torch.manual_seed(0)
    config = cpu_sized(wysiwyg_trainer_config(), tiny_scene)
    config.pipeline.model.colour_warmup_iterations = 8  # both phases within the 24 steps
    pipeline = config.pipeline.setup(device="cpu", test_mode="val", world_size=1, local_rank=0)
    model = pipeline.model
    assert isinstance(model, WysiwygSamplerModel)
    groups = pipeline.get_param_groups()
    assert set(groups) == {"fields", "learned_sampler"}  # camera optimiser off
    assert {id(p) for p in groups["learned_sampler"]} == {id(p) for p in model.sampler.parameters()}
    optimizers = Optimizers(config.optimizers, groups)
    callbacks = pipeline.get_training_callbacks(
        TrainingCallbackAttributes(optimizers=optimizers, grad_scaler=None, pipeline=pipeline, trainer=None)
    )
    cnn_before = [p.detach().clone() for p in groups["learned_sampler"]]

    def held_out_image_mse() -> float:
        # The loss on a whole held-out image: training batches are two random patches, whose loss
        # swings with how much of the object they cover, so the trend is measured here.
        pipeline.eval()
        camera = pipeline.datamanager.eval_dataset.cameras[0:1]
        outputs = model.get_outputs_for_camera(camera)
        target = pipeline.datamanager.eval_dataset[0]["image"][..., :3]
        pipeline.train()
        return float(((outputs["rgb"] - target) ** 2).mean())

    mse_before = held_out_image_mse()
    sampler_losses, samples_per_ray = [], []
    for step in range(24):
        for callback in callbacks:
            callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        optimizers.zero_grad_all()
        _, loss_dict, metrics = pipeline.get_train_loss_dict(step=step)
        loss = sum(loss_dict.values())
        assert torch.isfinite(loss), loss_dict
        loss.backward()
        optimizers.optimizer_step_all()
        sampler_losses.append(float(loss_dict["sampler_loss"]))
        samples_per_ray.append(float(metrics["field_samples_per_ray"]))
    mse_after = held_out_image_mse()
    assert mse_after < 0.85 * mse_before, (mse_before, mse_after)
    assert all(torch.isfinite(torch.tensor(sampler_losses)))
    # The supervision loss trains the CNN; adaptive 16/32 budgets at 10 % give 17.6 samples per ray.
    assert any(not torch.equal(a, b) for a, b in zip(cnn_before, groups["learned_sampler"]))
    # Field rays get adaptive budgets over each batch (32 samples for its 10 % hardest rays): 17.6.
    assert sum(samples_per_ray) / len(samples_per_ray) == pytest.approx(17.6, abs=0.3)

    pipeline.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    outputs = model.get_outputs_for_camera(camera)
    assert outputs["rgb"].shape == (RESOLUTION, RESOLUTION, 3)
    assert outputs["depth"].shape == (RESOLUTION, RESOLUTION, 1)
    assert torch.isfinite(outputs["rgb"]).all() and torch.isfinite(outputs["depth"]).all()
    assert outputs["field_samples"].min() >= 16 and outputs["field_samples"].max() <= 32
    assert float(outputs["field_samples"].mean()) == pytest.approx(17.6, abs=0.1)
    # The colour head is not saturated: a field that starts transparent (initial density 0.01)
    # without the colour warm-up has it driven to black within ~20 iterations, and the foreground
    # renders as one grey (channel spread below 1e-6); here the colours have begun to separate.
    target = pipeline.datamanager.eval_dataset[0]["image"][..., :3]
    foreground = target.min(dim=-1).values < 0.98
    rendered_spread = outputs["rgb"][foreground].std(dim=-1).mean()
    assert rendered_spread > 1e-4, float(rendered_spread)

    metrics = pipeline.get_average_eval_image_metrics()
    assert {"psnr", "ssim", "field_samples_per_ray", "probe_samples_per_ray"} <= set(metrics)
    assert metrics["psnr"] > 8.0  # from a grey start: clearly learned something


def test_last_real_sample_values_skip_the_padding():
    from wysiwyg_nerfstudio.ray_samples import last_real_sample_values

    values = torch.arange(12.0).reshape(2, 3, 2)  # 2 rays, 3 sample slots, 2 channels
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert last_real_sample_values(values, mask).tolist() == [[2.0, 3.0], [10.0, 11.0]]
    assert last_real_sample_values(values, None).tolist() == [[4.0, 5.0], [10.0, 11.0]]


def test_last_sample_background_is_the_deepest_real_sample(tiny_scene, monkeypatch):
    """Rays render over their deepest real sample's colour, and the renderer's setting rules (the
    benchmark evaluates over white): "last_sample" minus "white" is (1 - opacity) (last colour - 1)."""
    from nerfstudio.field_components.field_heads import FieldHeadNames

    import wysiwyg_nerfstudio.model as model_module
    from wysiwyg_nerfstudio.ray_samples import evaluate_real_samples, last_real_sample_values
    from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

    torch.manual_seed(0)
    config = cpu_sized(wysiwyg_trainer_config(), tiny_scene)
    assert config.pipeline.model.background_color == "white"
    config.pipeline.model.background_color = "last_sample"
    pipeline = config.pipeline.setup(device="cpu", test_mode="val", world_size=1, local_rank=0)
    model = pipeline.model
    pipeline.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    last_colours = []

    def evaluate_and_keep_last_colour(field, ray_samples, mask):
        outputs = evaluate_real_samples(field, ray_samples, mask)
        last_colours.append(last_real_sample_values(outputs[FieldHeadNames.RGB], mask))
        return outputs

    monkeypatch.setattr(model_module, "evaluate_real_samples", evaluate_and_keep_last_colour)
    over_last = model.get_outputs_for_camera(camera)
    model.renderer_rgb.background_color = "white"
    over_white = model.get_outputs_for_camera(camera)
    last = torch.cat(last_colours[: len(last_colours) // 2]).reshape(RESOLUTION, RESOLUTION, 3)
    expected = over_white["rgb"] + (1.0 - over_white["accumulation"]) * (last - 1.0)
    assert torch.allclose(over_last["rgb"], expected.clamp(0, 1), atol=1e-5)
    assert float((over_last["rgb"] - over_white["rgb"]).abs().max()) > 1e-3  # the fresh field is hazy


def test_colour_warmup_trains_the_density_first(tiny_scene):
    """Before ``colour_warmup_iterations`` the RGB loss reaches the density, not the colour head;
    the model's training callback keeps the step."""
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation

    from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

    config = cpu_sized(wysiwyg_trainer_config(), tiny_scene)
    warmup = config.pipeline.model.colour_warmup_iterations
    assert warmup > 0
    pipeline = config.pipeline.setup(device="cpu", test_mode="val", world_size=1, local_rank=0)
    model = pipeline.model
    pipeline.train()

    def rgb_loss_gradients(step: int) -> tuple[float, float]:
        for callback in pipeline.get_training_callbacks(
            TrainingCallbackAttributes(optimizers=None, grad_scaler=None, pipeline=pipeline, trainer=None)
        ):
            callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        assert model.training_step == step
        model.zero_grad(set_to_none=True)
        _, loss_dict, _ = pipeline.get_train_loss_dict(step=step)
        loss_dict["rgb_loss"].backward()
        norm = lambda module: sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)  # noqa: E731
        return norm(model.field.mlp_head), norm(model.field.mlp_base)

    colour, density = rgb_loss_gradients(0)
    assert colour == 0.0 and density > 0.0
    colour, density = rgb_loss_gradients(warmup)
    assert colour > 0.0 and density > 0.0


def test_negative_colour_warmup_is_rejected():
    from wysiwyg_nerfstudio.model import WysiwygSamplerModelConfig

    with pytest.raises(ValueError, match="colour_warmup_iterations"):
        WysiwygSamplerModelConfig(colour_warmup_iterations=-1)


def test_rendering_pads_images_not_divisible_by_the_probe_scale(tiny_scene):
    from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

    config = cpu_sized(wysiwyg_trainer_config(), tiny_scene)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val", world_size=1, local_rank=0)
    pipeline.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    assert pipeline.model.config.sampler.downscale == 2
    camera.rescale_output_resolution(31 / RESOLUTION)  # 31x31: not a multiple of the probe's downscale
    outputs = pipeline.model.get_outputs_for_camera(camera)
    assert outputs["rgb"].shape == (31, 31, 3)


def test_training_and_rendering_under_half_precision_autocast(tiny_scene):
    """ns-train's default mixed precision (fp16 autocast on CUDA), reproduced with CPU autocast."""
    from nerfstudio.engine.optimizers import Optimizers

    from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

    torch.manual_seed(0)
    config = cpu_sized(wysiwyg_trainer_config(), tiny_scene)
    pipeline, before_iteration = training_pipeline(config)
    optimizers = Optimizers(config.optimizers, pipeline.get_param_groups())
    for step in range(2):
        before_iteration(step)
        optimizers.zero_grad_all()
        with torch.autocast("cpu", dtype=torch.float16):
            _, loss_dict, _ = pipeline.get_train_loss_dict(step=step)
            loss = sum(loss_dict.values())
        assert torch.isfinite(loss), loss_dict
        loss.backward()
        optimizers.optimizer_step_all()
    pipeline.eval()
    with torch.autocast("cpu", dtype=torch.float16):
        outputs = pipeline.model.get_outputs_for_camera(pipeline.datamanager.eval_dataset.cameras[0:1])
    assert outputs["rgb"].shape == (RESOLUTION, RESOLUTION, 3)
    assert all(bool(torch.isfinite(value).all()) for value in outputs.values())


def test_training_batches_must_be_patches(tiny_scene):
    from nerfstudio.data.pixel_samplers import PixelSamplerConfig

    from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

    config = cpu_sized(wysiwyg_trainer_config(), tiny_scene)
    config.pipeline.datamanager.pixel_sampler = PixelSamplerConfig()
    config.pipeline.datamanager.sampler_rays_per_batch = 300
    pipeline, before_iteration = training_pipeline(config)
    before_iteration(0)
    with pytest.raises(ValueError, match="row-major 16x16 patches"):
        pipeline.get_train_loss_dict(step=0)


def test_training_batches_are_sampler_patches_then_random_field_rays(tiny_scene):
    from wysiwyg_nerfstudio.datamanager import FIELD_RAY_KEY, PIXEL_KEY
    from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

    torch.manual_seed(0)
    pipeline, before_iteration = training_pipeline(cpu_sized(wysiwyg_trainer_config(), tiny_scene))
    before_iteration(0)
    pipeline.get_train_loss_dict(step=0)  # fills the field-ray pool
    ray_bundle, batch = pipeline.datamanager.next_train(step=1)
    total = SAMPLER_RAYS_PER_BATCH + FIELD_RAYS_PER_BATCH
    assert ray_bundle.shape == (total,) and batch["image"].shape == (total, 3)
    is_field_ray = ray_bundle.metadata[FIELD_RAY_KEY][:, 0]
    assert not is_field_ray[:SAMPLER_RAYS_PER_BATCH].any() and is_field_ray[SAMPLER_RAYS_PER_BATCH:].all()
    pixels = ray_bundle.metadata[PIXEL_KEY]
    assert torch.equal(pixels, batch["indices"]) and torch.equal(ray_bundle.camera_indices[:, 0], pixels[:, 0])
    dataset = pipeline.datamanager.train_dataset
    for camera, y, x in pixels[SAMPLER_RAYS_PER_BATCH::37].tolist():
        expected = dataset[camera]["image"][y, x, :3]
        row = ((pixels == torch.tensor([camera, y, x])).all(-1)).nonzero()[0, 0]
        assert torch.allclose(batch["image"][row], expected)
    # The patches: row-major 16x16 blocks of adjacent pixels of one image.
    first_patch = pixels[:256].reshape(16, 16, 3)
    assert (first_patch[..., 0] == first_patch[0, 0, 0]).all()
    assert torch.equal(first_patch[:, 0, 1] - first_patch[0, 0, 1], torch.arange(16))
    assert torch.equal(first_patch[0, :, 2] - first_patch[0, 0, 2], torch.arange(16))


def test_field_rays_reuse_the_patch_predictions(tiny_scene):
    """The probe and the CNN run on the sampler's patches only; the pipeline keeps those
    predictions in the datamanager's pool, and the next batches' field rays are pixels of earlier
    patches, sampled from the distributions predicted for them. Only the field rays are rendered
    and carry the RGB loss, except on the first iteration (empty pool), when the patches are."""
    from wysiwyg_nerfstudio.datamanager import DISTRIBUTION_KEY, HIT_PROBABILITY_KEY, PIXEL_KEY
    from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

    torch.manual_seed(0)
    pipeline, before_iteration = training_pipeline(cpu_sized(wysiwyg_trainer_config(), tiny_scene))
    model, datamanager = pipeline.model, pipeline.datamanager
    probed_shapes = []
    predict = model.sampler.predict

    def recording_predict(rays, *args, **kwargs):
        probed_shapes.append(tuple(rays.batch_shape))
        return predict(rays, *args, **kwargs)

    model.sampler.predict = recording_predict
    before_iteration(0)
    outputs, loss_dict, _ = pipeline.get_train_loss_dict(step=0)
    assert outputs["rgb"].shape == (SAMPLER_RAYS_PER_BATCH, 3)  # no field rays yet: the patches
    pool = datamanager.field_ray_pool
    assert len(pool) == SAMPLER_RAYS_PER_BATCH
    assert torch.equal(pool.pixels[: len(pool)], outputs["patch_pixels"])
    assert torch.allclose(pool.distributions[: len(pool)].float(), outputs["patch_distribution"], atol=2e-3)

    patch_pixels = {tuple(pixel): row for row, pixel in enumerate(pool.pixels[: len(pool)].tolist())}
    for step in (1, 2):
        before_iteration(step)
        ray_bundle, batch = datamanager.next_train(step=step)
        field_pixels = ray_bundle.metadata[PIXEL_KEY][SAMPLER_RAYS_PER_BATCH:]
        distributions = ray_bundle.metadata[DISTRIBUTION_KEY][SAMPLER_RAYS_PER_BATCH:]
        hits = ray_bundle.metadata[HIT_PROBABILITY_KEY][SAMPLER_RAYS_PER_BATCH:, 0]
        if step == 1:  # the pool holds the first iteration's patches only
            for pixel, distribution, hit in list(zip(field_pixels.tolist(), distributions, hits))[::17]:
                row = patch_pixels[tuple(pixel)]
                assert torch.allclose(distribution, outputs["patch_distribution"][row], atol=2e-3)
                assert float(hit) == pytest.approx(float(outputs["patch_hit_probability"][row]), abs=1e-3)
        step_outputs = model(ray_bundle)
        assert step_outputs["rgb"].shape == (FIELD_RAYS_PER_BATCH, 3)
        loss_dict = model.get_loss_dict(step_outputs, batch)
        field_targets = batch["image"][SAMPLER_RAYS_PER_BATCH:]
        assert torch.allclose(loss_dict["rgb_loss"], ((step_outputs["rgb"] - field_targets) ** 2).mean())
        assert torch.isfinite(loss_dict["sampler_loss"])
        datamanager.keep_field_ray_predictions(
            step_outputs["patch_pixels"], step_outputs["patch_distribution"], step_outputs["patch_hit_probability"]
        )
    assert len(pool) == 3 * SAMPLER_RAYS_PER_BATCH
    # One probe per iteration, on the patches alone: nothing is predicted for the field rays.
    num_patches = SAMPLER_RAYS_PER_BATCH // 256
    assert probed_shapes == [(num_patches, 16, 16)] * 3


def test_the_pool_needs_the_method_pipeline(tiny_scene):
    """The model's patch predictions reach the pool through WysiwygPipeline only; with nerfstudio's
    plain pipeline the second batch says so instead of training on patches forever."""
    from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

    from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

    config = cpu_sized(wysiwyg_trainer_config(), tiny_scene)
    config.pipeline = VanillaPipelineConfig(datamanager=config.pipeline.datamanager, model=config.pipeline.model)
    pipeline, before_iteration = training_pipeline(config)
    before_iteration(0)
    pipeline.get_train_loss_dict(step=0)
    with pytest.raises(RuntimeError, match="WysiwygPipeline"):
        pipeline.get_train_loss_dict(step=1)


def test_batch_options_are_validated():
    from wysiwyg_nerfstudio.datamanager import WysiwygDataManagerConfig

    for name in ("sampler_rays_per_batch", "field_ray_pool_size"):
        with pytest.raises(ValueError, match=name):
            WysiwygDataManagerConfig(**{name: 0})
    with pytest.raises(ValueError, match="train_num_images_to_sample_from"):
        WysiwygDataManagerConfig(train_num_images_to_sample_from=8)


def test_ns_train_of_the_method_restarts_with_passive_openmp_waiting():
    from wysiwyg_nerfstudio.cpu_threads import libgomp_loaded, passive_wait_restart_command

    assert libgomp_loaded()  # torch is imported: the policy can no longer change in this process
    argv = ["/venv/bin/ns-train", "wysiwyg-sampler", "--data", "scene"]
    assert passive_wait_restart_command(argv, {}, "/venv/bin/python", "wysiwyg-sampler") == ["/venv/bin/python", *argv]
    module_argv = ["/venv/lib/site-packages/nerfstudio/scripts/train.py", "wysiwyg-sampler"]
    assert passive_wait_restart_command(module_argv, {}, "python", "wysiwyg-sampler") == ["python", *module_argv]
    # The user's own policy, other methods and other commands are left alone.
    assert passive_wait_restart_command(argv, {"OMP_WAIT_POLICY": "ACTIVE"}, "python", "wysiwyg-sampler") is None
    assert passive_wait_restart_command(["/venv/bin/ns-train", "nerfacto"], {}, "python", "wysiwyg-sampler") is None
    assert passive_wait_restart_command(["/venv/bin/ns-eval", "wysiwyg-sampler"], {}, "python", "wysiwyg-sampler") is None
    assert passive_wait_restart_command(["pytest"], {}, "python", "wysiwyg-sampler") is None


@pytest.mark.slow
def test_ns_train_then_ns_eval_and_ns_render_command_line(tiny_scene, tmp_path):
    """The installed commands end to end: checkpoints load under torch's weights_only default, and
    ns-render's camera-path rendering (the viewer's render path) runs the method on new cameras."""
    bin_dir = Path(sys.executable).parent
    ns_train, ns_eval, ns_render = bin_dir / "ns-train", bin_dir / "ns-eval", bin_dir / "ns-render"
    if not ns_train.exists() or not ns_eval.exists() or not ns_render.exists():
        pytest.skip("ns-train / ns-eval / ns-render are not installed next to this interpreter")
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "OMP_WAIT_POLICY")}
    env["OMP_NUM_THREADS"] = "1"
    train = [
        str(ns_train), "wysiwyg-sampler",
        "--machine.device-type", "cpu", "--vis", "tensorboard",
        "--max-num-iterations", "3", "--steps-per-save", "2", "--save-only-latest-checkpoint", "True",
        "--output-dir", str(tmp_path / "outputs"), "--experiment-name", "tiny", "--timestamp", "run",
        "--pipeline.datamanager.train-num-rays-per-batch", str(FIELD_RAYS_PER_BATCH),
        "--pipeline.datamanager.sampler-rays-per-batch", str(SAMPLER_RAYS_PER_BATCH),
        "--pipeline.datamanager.eval-num-rays-per-batch", str(SAMPLER_RAYS_PER_BATCH),
        "--pipeline.model.implementation", "torch", "--pipeline.model.log2-hashmap-size", "12",
        "--pipeline.model.max-res", "64", "--pipeline.model.num-levels", "8",
        "blender-data", "--data", str(tiny_scene),
    ]  # fmt: skip
    result = subprocess.run(train, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Without a policy of the user's, ns-train restarted once under passive OpenMP waiting.
    assert result.stderr.count("restarting ns-train with OMP_WAIT_POLICY=PASSIVE") == 1
    config_path = tmp_path / "outputs" / "tiny" / "wysiwyg-sampler" / "run" / "config.yml"
    assert config_path.is_file()
    assert list(config_path.parent.glob("nerfstudio_models/*.ckpt"))

    output = tmp_path / "eval.json"
    result = subprocess.run(
        [str(ns_eval), "--load-config", str(config_path), "--output-path", str(output)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(output.read_text())["results"]
    assert {"psnr", "ssim", "field_samples_per_ray"} <= set(results)
    # Three iterations learn next to nothing: check what ns-eval reports is well formed.
    assert math.isfinite(results["psnr"]) and -1.0 <= results["ssim"] <= 1.0
    from wysiwyg_nerfstudio.model import default_sampler_config

    sampler = default_sampler_config()
    low, high = (sampler.adaptive_low, sampler.adaptive_high) if sampler.budget == "adaptive" else (sampler.budget,) * 2
    assert low <= results["field_samples_per_ray"] <= high

    # Cameras between the training poses, none of which the method saw: rgb and depth side by side.
    # ns-render wants an ffmpeg on PATH even for images; imageio-ffmpeg, installed with the project,
    # ships one.
    import imageio_ffmpeg

    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    frames = tmp_path / "render" / "path.mp4"
    render = [
        str(ns_render), "interpolate", "--load-config", str(config_path), "--output-path", str(frames),
        "--output-format", "images", "--image-format", "png", "--pose-source", "train",
        "--interpolation-steps", "2", "--rendered-output-names", "rgb", "depth",
    ]  # fmt: skip
    result = subprocess.run(render, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    images = sorted((tmp_path / "render").rglob("*.png"))
    assert len(images) >= 2, result.stdout[-2000:]
    import imageio.v3 as iio

    for path in images:
        frame = iio.imread(path)
        assert frame.shape[:2] == (RESOLUTION, 2 * RESOLUTION), (path, frame.shape)


@pytest.fixture(scope="module")
def tiny_unbounded_scene(tmp_path_factory) -> Path:
    from wysiwyg_nerfstudio.synthetic_scenes import write_unbounded_scene

    directory = tmp_path_factory.mktemp("unbounded_scene")
    return write_unbounded_scene(directory, resolution=RESOLUTION, num_images=10, reference_samples=512)


def test_unbounded_capture_in_nerfstudio_format_trains_with_lin_disp_bins(tiny_unbounded_scene):
    """nerfstudio-data (nerfstudio's default format) with ``scene_bounds="unbounded"``: rays span
    near_plane to far_plane in nerfacto's lin-disp bins through the contracted field; training
    steps and a whole held-out image run, and the image's depths reach past the scene box."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

    torch.manual_seed(0)
    config = cpu_sized(wysiwyg_trainer_config(), tiny_unbounded_scene)
    config.pipeline.datamanager.dataparser = NerfstudioDataParserConfig(data=tiny_unbounded_scene)
    model_config = config.pipeline.model
    model_config.scene_bounds = "unbounded"
    model_config.background_color = "last_sample"
    pipeline, before_iteration = training_pipeline(config)
    model = pipeline.model
    assert model.sampler.config.spacing == "lin-disp"
    parameters = [p for group in pipeline.get_param_groups().values() for p in group]
    optimizer = torch.optim.Adam(parameters, lr=1e-2)
    for step in range(3):
        before_iteration(step)
        optimizer.zero_grad()
        _, loss_dict, _ = pipeline.get_train_loss_dict(step=step)
        loss = sum(loss_dict.values())
        assert torch.isfinite(loss), loss_dict
        loss.backward()
        optimizer.step()
    pipeline.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    outputs = model.get_outputs_for_camera(camera)
    assert outputs["rgb"].shape == (RESOLUTION, RESOLUTION, 3) and torch.isfinite(outputs["rgb"]).all()
    # Rays end at far_plane, so the bins span the distance: the farthest samples lie far beyond
    # the unit box around the (rescaled) cameras.
    ray_bundle = model.collider(camera.generate_rays(camera_indices=0, keep_shape=True).flatten())
    assert float(ray_bundle.fars.min()) == pytest.approx(model_config.far_plane)
    assert float(outputs["depth"].max()) > 2.0


def test_unbounded_options_are_validated():
    from wysiwyg_nerfstudio.model import WysiwygSamplerModelConfig

    with pytest.raises(ValueError, match="scene_bounds"):
        WysiwygSamplerModelConfig(scene_bounds="sphere")
    with pytest.raises(ValueError, match="near_plane"):
        WysiwygSamplerModelConfig(scene_bounds="unbounded", near_plane=2.0, far_plane=1.0)
