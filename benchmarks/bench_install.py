"""Benchmark: installing the project's environment with pip against uv, side by side in one run.

Each installer gets a NEW virtual environment and an EMPTY package cache of its own (what a
fresh clone on a new machine meets), and installs what ``make install`` installs: the project
with its extras ``[dev,distributed,laplace,jax]``, editable, and torch pinned. Both compile the
installed modules to bytecode (pip always does; uv with ``--compile-bytecode``, without which
every later import compiles from source: ``import torch, pyro, arviz, gpytorch, jax`` took 16.4 s
instead of 6.6 s on the 2-core CPU where PYTHONDONTWRITEBYTECODE is set). The uv wheel itself
is installed into the uv venv by pip first, inside uv's timed part. The script then checks that
both environments hold the same distributions at the same versions and prints the times and
their ratio.

It downloads the whole stack twice (about 2.7 GB of wheels each on Python 3.12, where PyPI's
torch is its CUDA build), so it is not part of the test suite.

Usage::

    python benchmarks/bench_install.py                      # the project's stack, twice
    python benchmarks/bench_install.py --spec "six==1.16.0" # any requirement list instead
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTRAS = "[dev,distributed,laplace,jax]"


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[:4])} ... failed:\n{proc.stderr[-3000:]}")


def _freeze(python: Path, env: dict[str, str]) -> dict[str, str]:
    """name -> version of every distribution in the environment (names normalised, PEP 503)."""
    code = ("import importlib.metadata as m\n"
            "for d in m.distributions(): print(d.metadata['Name'], d.version)")
    out = subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    pairs = (line.split(" ", 1) for line in out.splitlines() if line.strip())
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pairs}


def install(tool: str, requirements: list[str], base_python: str, work: Path) -> tuple[float, dict]:
    """Seconds to create a venv and install ``requirements`` with ``tool`` from an empty cache;
    and the environment's distributions."""
    venv, cache = work / f"venv-{tool}", work / f"cache-{tool}"
    env = dict(os.environ, PIP_CACHE_DIR=str(cache), UV_CACHE_DIR=str(cache))
    python = venv / "bin" / "python"
    t0 = time.perf_counter()
    _run([base_python, "-m", "venv", str(venv)], env)
    if tool == "pip":
        _run([str(python), "-m", "pip", "install", "-q", *requirements], env)
    else:
        _run([str(python), "-m", "pip", "install", "-q", "uv"], env)
        _run([str(python), "-m", "uv", "pip", "install", "-q", "--python", str(python),
              "--compile-bytecode", *requirements], env)
    seconds = time.perf_counter() - t0
    return seconds, _freeze(python, env)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=None,
                    help="requirements to install instead of the project's stack "
                         "(space-separated, e.g. 'six==1.16.0')")
    ap.add_argument("--torch-version", default="2.13.0")
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter the venvs are made from (default: this one)")
    ap.add_argument("--work-dir", default=None, help="where the venvs and caches go (deleted)")
    a = ap.parse_args(argv)
    requirements = (a.spec.split() if a.spec else
                    ["-e", f".{EXTRAS}", f"torch=={a.torch_version}"])
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="bench-install-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"installing {' '.join(requirements)} with Python "
          f"{subprocess.run([a.python, '-V'], capture_output=True, text=True).stdout.strip()}; "
          f"{os.cpu_count()} CPUs, {platform.platform()}, load {os.getloadavg()[0]:.2f}",
          flush=True)
    try:
        results = {}
        for tool in ("pip", "uv"):
            results[tool] = install(tool, requirements, a.python, work)
            print(f"  {tool}: {results[tool][0]:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (t_pip, pkgs_pip), (t_uv, pkgs_uv) = results["pip"], results["uv"]
    ignore = {"pip", "uv", "setuptools"}
    differ = sorted(k for k in (set(pkgs_pip) | set(pkgs_uv)) - ignore
                    if pkgs_pip.get(k) != pkgs_uv.get(k))
    print("\n| installer | wall (s) | speed-up |\n|---|---|---|")
    print(f"| pip | {t_pip:.1f} | 1.0x |")
    print(f"| uv (--compile-bytecode) | {t_uv:.1f} | {t_pip / t_uv:.1f}x |")
    print(f"\nsame distributions and versions in both ({len(set(pkgs_pip) - ignore)}, "
          f"pip / uv / setuptools aside): {not differ}")
    for name in differ:
        print(f"  {name}: pip {pkgs_pip.get(name)}, uv {pkgs_uv.get(name)}")


if __name__ == "__main__":
    main()
