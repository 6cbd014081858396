"""``--sampler FIELD=VALUE`` for the benchmarks: typed changes to ``LearnedSamplerConfig``."""

from __future__ import annotations

import ast
import dataclasses


def parse_sampler_overrides(items: list[str]) -> dict:
    """``FIELD=VALUE`` strings as typed LearnedSamplerConfig changes (values read as Python literals)."""
    from learned_sampler import LearnedSamplerConfig

    names = {f.name for f in dataclasses.fields(LearnedSamplerConfig)}
    overrides = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in names or not value:
            raise SystemExit(f"--sampler {item!r}: expected FIELD=VALUE with FIELD one of {sorted(names)}")
        try:
            overrides[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[name] = value
    return overrides
