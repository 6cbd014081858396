"""Passive OpenMP waiting for ``ns-train wysiwyg-sampler``, so shared CPUs do not stall training.

torch's CPU kernels run on libgomp threads, which by default spin between parallel regions. When
another job uses the same cores, the spinning threads take the time slices the working ones need:
beside other CPU jobs, training iterations of the method took 6-7 s with spinning threads against
0.3-0.6 s with ``OMP_WAIT_POLICY=PASSIVE`` (2 threads on 2 shared cores; one thread took 0.6 s).
libgomp reads the policy once, when it is loaded, and ``ns-train`` imports torch (and so libgomp)
before it imports the method's plug-in. So when ``ns-train wysiwyg-sampler`` starts without the
variable, ``passive_wait_restart`` starts it again, the same arguments in the same process (exec),
with ``OMP_WAIT_POLICY=PASSIVE``. A policy the user set is kept; other commands and methods are
left alone (in a process that has not loaded libgomp yet the variable is only set).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence


def libgomp_loaded() -> bool:
    """Whether this process has loaded libgomp (Linux; elsewhere assumed loaded)."""
    try:
        return "libgomp" in Path("/proc/self/maps").read_text()
    except OSError:
        return True


def is_ns_train_of(argv: Sequence[str], method_name: str) -> bool:
    """``argv`` is ``ns-train METHOD ...`` (the console script or nerfstudio's train module)."""
    if len(argv) < 2 or argv[1] != method_name:
        return False
    program = Path(argv[0])
    return program.name == "ns-train" or program.parts[-3:] == ("nerfstudio", "scripts", "train.py")


def passive_wait_restart_command(
    argv: Sequence[str], environ: Mapping[str, str], executable: str, method_name: str
) -> list[str] | None:
    """The command that restarts this ``ns-train wysiwyg-sampler`` under passive waiting, or
    ``None`` when no restart is needed (another command, or ``OMP_WAIT_POLICY`` already set)."""
    if "OMP_WAIT_POLICY" in environ or not is_ns_train_of(argv, method_name):
        return None
    return [executable, *argv]


def passive_wait_restart(method_name: str) -> None:
    """Make OpenMP threads wait passively in ``ns-train method_name`` (module docstring)."""
    if not libgomp_loaded():
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return
    command = passive_wait_restart_command(sys.argv, os.environ, sys.executable, method_name)
    if command is None:
        return
    print(
        f"{method_name}: restarting ns-train with OMP_WAIT_POLICY=PASSIVE (spinning OpenMP threads slow "
        "training many times on shared CPUs; set OMP_WAIT_POLICY yourself to skip this restart)",
        file=sys.stderr,
        flush=True,
    )
    os.execve(command[0], command, {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
