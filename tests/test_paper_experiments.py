"""benchmarks/paper_experiments.py end to end at its smallest size: training, evaluation, Table 3
points and the report, then resuming an interrupted run and skipping finished work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "paper_experiments.py"
RUNS = ["full", "no_beta_regularisation"]  # two of the five runs keep this test to a few minutes


def run_benchmark(out: Path) -> str:
    command = [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--runs", *RUNS, "--threads", "1", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow  # about 3 minutes on a busy 2-core machine: two 64-image trainings and their evaluations
def test_quick_pipeline_writes_both_tables_resumes_and_skips_finished_work(tmp_path):
    out = tmp_path / "paper"
    stdout = run_benchmark(out)
    assert "## Table 4" in stdout and "## Table 3" in stdout
    report = json.loads((out / "paper_experiments.json").read_text())

    for name in RUNS:
        run = report["runs"][f"{name}-seed0"]
        assert run["train"]["status"] == "finished" and run["train"]["trained_now"]
        evaluation = run["evaluation"]
        assert evaluation["status"] == "done", evaluation["errors"]
        metrics = evaluation["metrics"]
        for key in ("distribution", "normals", "consistency", "drift", "nfs"):
            assert key in metrics
        assert metrics["distribution"]["fid"] >= 0 and metrics["normals"]["fid"] >= 0
        inversion = evaluation["inversion"]
        assert inversion["images"] == 1 and inversion["chamfer"] > 0 and 0 <= inversion["normal_consistency"] <= 1
    # Runs not asked for are listed without results; the table says so.
    assert report["runs"]["no_stratification-seed0"]["evaluation"] is None

    rows = {row["run"]: row for row in report["table4"]["rows"]}
    assert list(rows) == ["full", "no_learned_sampler", "no_stratification", "no_robust_sampling", "no_beta_regularisation"]
    assert rows["full"]["paper"] == {"fid": 4.97, "fid_n": 60.76, "nfs": 29.35}
    assert rows["full"]["metrics.distribution.fid"] is not None and rows["no_stratification"]["seeds"] == []

    points = {row["setting"]: row for row in report["table3"]["rows"]}
    assert list(points) == ["checkpoint", "learned-8", "two-pass-12+12"]
    for row in points.values():
        assert row["distribution.fid"] is not None and row["normals.fid"] is not None, row
        assert row["timing.wall_ms_per_frame"] > 0
    assert points["learned-8"]["renderer.samples_per_ray"] == pytest.approx(8.0)
    assert points["learned-8"]["renderer.probe_samples_per_ray"] > 0
    assert points["two-pass-12+12"]["renderer.samples_per_ray"] == pytest.approx(24.0)
    assert points["two-pass-12+12"]["paper_fid"] is None  # the paper has no 24-sample column

    # An interrupted run (final checkpoint gone) resumes from its newest checkpoint; a finished one is skipped.
    interrupted = out / "no_beta_regularisation-seed0"
    final = interrupted / "checkpoint-000000064.pt"
    final.unlink()
    kept = out / "full-seed0" / "checkpoint-000000064.pt"
    kept_mtime = kept.stat().st_mtime_ns
    stdout = run_benchmark(out)
    assert "full-seed0: finished (checkpoint-000000064.pt), skipped" in stdout
    assert "resumed from" in (interrupted / "train.log").read_text().split("\n$ ")[-1]
    assert final.is_file() and kept.stat().st_mtime_ns == kept_mtime
    report = json.loads((out / "paper_experiments.json").read_text())
    assert report["runs"]["no_beta_regularisation-seed0"]["train"]["invocations"] == 2

    # Everything done: a third invocation starts no subprocess at all.
    stdout = run_benchmark(out)
    assert "  $ " not in stdout, stdout
    assert stdout.count("skipped") == 2 * len(RUNS)
