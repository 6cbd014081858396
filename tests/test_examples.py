"""The example scripts run end to end (as a user would run them) and print sensible numbers.

Each script runs in a subprocess with few steps and small images; the tests parse the summary
lines the scripts print. Each takes about 6 s on a 2-core CPU (most of it importing torch); the
timeout is generous for slow shared machines.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
TIMEOUT_S = 180
NUMBER = r"([-+0-9.eEinfa]+)"  # also matches "nan" / "inf", so that the finiteness checks see them


def run_example(script: str, *args: str) -> str:
    """Run ``examples/<script>`` with ``args`` and return its stdout; fail on a non-zero exit."""
    # One intra-op thread: when pytest workers or other jobs share a small machine, OpenMP's
    # spinning threads oversubscribe the cores and slow these small workloads down ~10x.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_S,
    )
    assert completed.returncode == 0, f"{script} exited with {completed.returncode}:\n{completed.stderr}"
    return completed.stdout


@pytest.mark.slow
def test_own_field_trains_and_compares_samplers(tmp_path: Path) -> None:
    stdout = run_example("own_field.py", "--steps", "8", "--resolution", "32", "--seed", "1", "--out", str(tmp_path))
    final = stdout.strip().splitlines()[-1]
    match = re.fullmatch(
        rf"learned: {NUMBER} \(\+{NUMBER} probe\) spp, PSNR {NUMBER} dB \| "
        rf"two-pass 48\+48: {NUMBER} spp, PSNR {NUMBER} dB",
        final,
    )
    assert match, f"unexpected final line: {final!r}"
    values = [float(x) for x in match.groups()]
    assert all(math.isfinite(x) for x in values), final
    learned_spp, probe_spp, learned_psnr, two_pass_spp, two_pass_psnr = values
    # The default adaptive budget: 16 samples, 32 for 10 % of the rays -> about 17.6.
    assert 16.0 <= learned_spp < 32.0
    assert probe_spp == pytest.approx(12.0)  # 192 probe samples at 1/4 resolution
    assert two_pass_spp == pytest.approx(96.0)
    # Even a barely trained sampler renders a recognisable image; the two-pass one is near exact.
    assert 10.0 < learned_psnr < 100.0
    assert 30.0 < two_pass_psnr < 100.0
    for name in ("reference", "learned", "two_pass"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")


@pytest.mark.slow
def test_ray_batches_loss_falls() -> None:
    stdout = run_example("ray_batches.py", "--steps", "12", "--resolution", "32", "--chunk", "256", "--seed", "0")
    step_lines = [line.split() for line in stdout.splitlines() if re.match(r"\s*\d+\s", line)]
    assert len(step_lines) == 12
    losses = [float(fields[1]) for fields in step_lines]
    samples_per_ray = [float(fields[4]) for fields in step_lines]
    assert all(math.isfinite(x) and x >= 0.0 for x in losses)
    assert all(16.0 <= x < 32.0 for x in samples_per_ray)
    final = stdout.strip().splitlines()[-1]
    match = re.fullmatch(
        rf"photometric loss {NUMBER} -> {NUMBER} \(mean of the first / last \d+ steps\), "
        rf"learned: {NUMBER} \(\+{NUMBER} probe\) spp",
        final,
    )
    assert match, f"unexpected final line: {final!r}"
    values = [float(x) for x in match.groups()]
    assert all(math.isfinite(x) for x in values), final
    first, last, learned_spp, probe_spp = values
    assert last < 0.8 * first, f"the photometric loss did not fall: {first} -> {last}"
    assert 16.0 <= learned_spp < 32.0
    assert probe_spp == pytest.approx(12.0)
