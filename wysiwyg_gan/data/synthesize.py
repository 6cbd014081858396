"""Write a synthetic dataset: ``python -m wysiwyg_gan.data.synthesize --out DIR``.

Prints where it wrote and how long it took. The folder gets PNGs, ``dataset.json`` (EG3D camera
labels) and ``geometry.json`` (the ground-truth objects); it must not exist yet.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from wysiwyg_gan.data.synthetic import DEFAULT_NUM_IMAGES, synthesize_dataset


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wysiwyg_gan.data.synthesize", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", required=True, help="folder to create (must not exist, or be empty)")
    parser.add_argument(
        "--num-images", type=_positive_int, default=DEFAULT_NUM_IMAGES, help="number of images (default: %(default)s)"
    )
    parser.add_argument(
        "--resolution", type=_positive_int, default=64, help="image side in pixels (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the output is deterministic for it (default: %(default)s)"
    )
    parser.add_argument(
        "--backdrop",
        action="store_true",
        help="put every object in front of an opaque backdrop (a vertical blend of two colours) instead of black",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path = synthesize_dataset(args.out, args.num_images, args.resolution, args.seed, args.backdrop)
    except FileExistsError as error:
        parser.error(str(error))
    seconds = time.perf_counter() - start
    print(f"wrote {args.num_images} images of {args.resolution}x{args.resolution} to {path} in {seconds:.1f} s")


if __name__ == "__main__":
    main()
