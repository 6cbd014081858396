"""The core package imports without any of the optional heavy dependencies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import learned_sampler

FORBIDDEN = ("nerfstudio", "tyro", "rich", "tinycudann", "torchvision", "wysiwyg_gan")

_SCRIPT = """
import json, sys
import learned_sampler
print(json.dumps({
    "loaded": sorted(name for name in sys.modules if name.split(".")[0] in %r),
    "file": learned_sampler.__file__,
}))
"""


@pytest.mark.slow  # a fresh interpreter importing torch: ~3 s on a busy 2-core machine
def test_import_pulls_no_optional_dependencies():
    repo_root = Path(__file__).resolve().parents[1]
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT % (FORBIDDEN,)],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [], report["loaded"]
    # The subprocess imported this checkout's package, not some other installed copy.
    assert Path(report["file"]).resolve() == Path(learned_sampler.__file__).resolve()


def test_public_api_is_exported():
    for name in learned_sampler.__all__:
        assert hasattr(learned_sampler, name), name
    assert learned_sampler.__version__ == "0.1.0"


PUBLIC_MODULES = {"learned_sampler", "learned_sampler.validation", "learned_sampler.scenes"}
"""What code built on the library may import: the package, its argument checks and its test scenes."""


def test_consumers_use_only_the_public_surface():
    import ast

    repo_root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("wysiwyg_gan", "integrations", "benchmarks", "examples"):
        for path in sorted((repo_root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                elif isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                else:
                    continue
                for module in modules:
                    if module.split(".")[0] == "learned_sampler" and module not in PUBLIC_MODULES:
                        offenders.append(f"{path.relative_to(repo_root)}:{node.lineno} imports {module}")
    assert not offenders, "\n".join(offenders)


TRAINING_SIDE = {"wysiwyg_gan.training", "wysiwyg_gan.train", "wysiwyg_gan.snapshots", "wysiwyg_gan.evaluation"}
"""Modules that build or drive a ``GANTrainer``."""
TOOLS = (
    "inference", "generate", "metrics", "invert", "distribution_metrics", "inception_metrics", "consistency_metrics",
    "flatness_metrics", "geometry_metrics", "camera_pose", "noise_images", "perceptual_loss", "orbit_cameras", "mesh",
)  # fmt: skip


def _gan_imports(module: str) -> set[str]:
    """Every ``wysiwyg_gan`` module that ``wysiwyg_gan.<module>`` imports, at any level of its code."""
    import ast

    path = Path(__file__).resolve().parents[1] / "wysiwyg_gan" / f"{module.replace('.', '/')}.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("wysiwyg_gan.")}


def test_gan_imports_flow_one_way():
    for tool in TOOLS:
        assert not _gan_imports(tool) & TRAINING_SIDE, f"wysiwyg_gan.{tool} imports {_gan_imports(tool) & TRAINING_SIDE}"
    assert not _gan_imports("training") & {"wysiwyg_gan.inference", "wysiwyg_gan.train"}
    for module in ("rendering", "losses", "schedule", "config", "networks.triplane"):
        assert not _gan_imports(module) & (TRAINING_SIDE | {"wysiwyg_gan.inference"}), module


def test_the_gan_package_sets_passive_openmp_waiting_before_torch_loads():
    script = "import os, sys; import wysiwyg_gan; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert completed.stdout.split() == ["PASSIVE", "False"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own setting wins
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert completed.stdout.split() == ["ACTIVE", "False"]


@pytest.mark.parametrize("module", ["train", "generate", "metrics", "invert", "data.synthesize"])
def test_every_command_runs_as_a_module(module):
    """``python -m wysiwyg_gan.<module> --help`` prints its usage (the module runs its ``main``)."""
    completed = subprocess.run(
        [sys.executable, "-m", f"wysiwyg_gan.{module}", "--help"], capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "usage" in completed.stdout.lower(), completed.stdout[:500]
