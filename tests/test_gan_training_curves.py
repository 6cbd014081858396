"""benchmarks/gan_training_curves.py: the eval/* records of runs as a table, a JSON and a picture."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gan_training_curves.py"


@pytest.fixture(scope="module")
def curves():
    spec = importlib.util.spec_from_file_location("gan_training_curves", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, records: list[dict]) -> Path:
    folder.mkdir()
    lines = [json.dumps({"images": 8, "loss/g_adv": 0.7})]  # training records are skipped
    lines += [json.dumps({"images": r.pop("images"), **{f"eval/{k}": v for k, v in r.items()}}) for r in records]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_curves_of_two_runs_in_order_with_metrics_some_runs_lack(curves, tmp_path, capsys):
    new = _run(tmp_path / "new", [
        {"images": 200, "fid": 30.0, "floor_fid": 2.0, "relief": 0.6},
        {"images": 100, "fid": 40.0, "floor_fid": 2.0, "relief": 0.5},
    ])
    old = _run(tmp_path / "old", [{"images": 100, "fid": 50.0, "floor_fid": 2.0}])  # before relief existed
    out = tmp_path / "out"
    runs = curves.main([f"new={new}", str(old), "--out", str(out)])
    assert [r["images"] for r in runs["new"]] == [100, 200] and runs["old"][0]["fid"] == 50.0
    assert json.loads((out / "curves.json").read_text()) == runs and (out / "curves.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "new:" in table and "old:" in table and "| 100 |" in table


def test_curves_need_evaluation_records(curves, tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        curves.main([str(tmp_path / "missing")])
    empty = _run(tmp_path / "empty", [])
    with pytest.raises(SystemExit, match="holds no evaluation"):
        curves.main([str(empty), "--out", str(tmp_path / "out")])
