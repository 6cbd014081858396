"""``--sampler FIELD=VALUE`` for the benchmarks: typed changes to ``LearnedSamplerConfig``."""

from __future__ import annotations

import ast
import dataclasses


def parse_sampler_overrides(items: list[str], base) -> dict:
    """``FIELD=VALUE`` strings as typed changes to the ``LearnedSamplerConfig`` ``base``.

    Values are read as Python literals (else kept as strings). The changed config is built once
    here, so a bad field or value raises ``ValueError`` before any work, not in a training process.
    """
    names = {f.name for f in dataclasses.fields(base)}
    overrides = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in names or not value:
            raise ValueError(f"--sampler {item!r}: expected FIELD=VALUE with FIELD one of {sorted(names)}")
        try:
            overrides[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[name] = value
    try:
        dataclasses.replace(base, **overrides)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--sampler: {error}") from None
    return overrides
