"""Metric curves of GAN runs against the images seen, from the ``eval/*`` records of ``metrics.jsonl``.

``python -m wysiwyg_gan.train`` evaluates its EMA generator every ``--evaluation.every`` images
and at the end (``wysiwyg_gan.evaluation``). This script draws those records for one or more runs
side by side, prints them as a markdown table and writes them as JSON::

    python benchmarks/gan_training_curves.py runs/cpu                       # one run
    python benchmarks/gan_training_curves.py default=runs/cpu long=runs/cpu-long --out benchmarks/out/curves
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PANELS = (
    ("fid", "encoder FID (lower is better)", "floor_fid"),
    ("precision", "precision", "floor_precision"),
    ("recall", "recall (low: mode collapse)", "floor_recall"),
    ("family_total_variation", "shape-family shares vs the reals' (total variation)", "floor_family_total_variation"),
    ("colour_drift", "colour drift along an orbit", None),
    ("consistency_error", "multi-view consistency error", None),
    ("empty_seeds", "latents that render nothing (of the evaluation seeds)", None),
    ("opaque_fraction", "opaque share of the frame (dotted: the reals' foreground)", "real_foreground_fraction"),
    ("relief", "relief (about 0: painted on a wall)", None),
    ("normal_fid", "normal-map FID (dotted: real vs real)", "floor_normal_fid"),
)
COLUMNS = (
    "images", "resolution", "fid", "floor_fid", "kid", "precision", "recall", "frontal_recall", "floor_recall",
    "family_total_variation", "families_covered", "colour_drift", "consistency_error", "empty_seeds",
    "opaque_fraction", "real_foreground_fraction", "relief", "painted_share", "normal_fid", "floor_normal_fid", "seconds",
)


def read_evaluations(run: Path) -> list[dict]:
    """The ``eval/*`` records of ``run/metrics.jsonl`` (prefix removed), in order of images seen."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: pass a run folder written by python -m wysiwyg_gan.train")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SystemExit(f"{path}:{number} is not JSON: {error}") from error
        if "eval/fid" in record:
            records.append({"images": record["images"]} | {k[5:]: v for k, v in record.items() if k.startswith("eval/")})
    if not records:
        raise SystemExit(f"{path} holds no evaluation (eval/*) records: was --evaluation.every negative?")
    return sorted(records, key=lambda r: r["images"])


def markdown_table(name: str, records: list[dict]) -> str:
    lines = [f"{name}:", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for record in records:
        cells = []
        for column in COLUMNS:
            value = record.get(column)
            cells.append("" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = (len(PANELS) + 1) // 2
    figure, axes = plt.subplots(2, columns, figsize=(4.3 * columns, 7))
    for axis in axes.flat[len(PANELS) :]:
        axis.axis("off")
    for axis, (key, title, floor) in zip(axes.flat, PANELS):
        if not any(key in record for records in runs.values() for record in records):
            axis.axis("off")  # every run was evaluated before this metric existed
            continue
        for name, records in runs.items():
            records = [r for r in records if key in r]
            if not records:
                continue
            images = [r["images"] for r in records]
            line = axis.plot(images, [r[key] for r in records], marker="o", label=name)[0]
            if floor is not None:
                axis.plot(images, [r[floor] for r in records], linestyle=":", color=line.get_color(), label=f"{name}: real vs real")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("images seen")
        axis.grid(alpha=0.3)
    axes.flat[0].set_yscale("log")
    axes.flat[0].legend(fontsize=8)  # FID: every evaluation record has it
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders, optionally named: NAME=FOLDER")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/gan_training_curves"), help="folder for the PNG and JSON")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, _, folder = item.rpartition("=")
        runs[name or Path(folder).name] = read_evaluations(Path(folder))
    for name, records in runs.items():
        print(markdown_table(name, records) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(runs, args.out / "curves.png")
    (args.out / "curves.json").write_text(json.dumps(runs, indent=1))
    print(f"wrote {args.out / 'curves.png'} and {args.out / 'curves.json'}")
    return runs


if __name__ == "__main__":
    main()
