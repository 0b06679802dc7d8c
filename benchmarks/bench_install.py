"""Benchmark: installing the project's environment with pip against uv, side by side in one run;
and (``--part bytecode``) uv with and without compiling the whole environment to bytecode.

``--part installers`` (the default): each installer gets a NEW virtual environment and an EMPTY package cache of its own (what a
fresh clone on a new machine meets), and installs what ``make install`` installs: the project
with its extras ``[dev,distributed,laplace,jax]``, editable, and torch pinned. Both compile the
installed modules to bytecode (pip always does; uv with ``--compile-bytecode``, without which
every later import compiles from source: ``import torch, pyro, arviz, gpytorch, jax`` took 16.4 s
instead of 6.6 s on the 2-core CPU where PYTHONDONTWRITEBYTECODE is set). The uv wheel itself
is installed into the uv venv by pip first, inside uv's timed part. The script then checks that
both environments hold the same distributions at the same versions and prints the times and
their ratio.

``--part bytecode`` measures what ``make install`` chose: uv from a warm cache (filled by an
untimed install first) into a new venv, with ``--compile-bytecode``, without it, and without it
but followed by the Makefile's ``WARM_IMPORTS`` (every module of the two packages imported once,
bytecode writing on: what ``make install`` does); then in each venv the same imports twice
(``IMPORTS`` below: the first process of a run, then a later one), with bytecode writing on, as
the Makefile's commands run. Without ``--compile-bytecode`` or the warm imports the first import
compiles and writes what it imports; with it, the install compiles everything up front.

``--part installers`` downloads the whole stack twice (about 2.7 GB of wheels each on Python 3.12, where PyPI's
torch is its CUDA build), so it is not part of the test suite.

Usage::

    python benchmarks/bench_install.py                      # the project's stack, twice
    python benchmarks/bench_install.py --spec "six==1.16.0" # any requirement list instead
    python benchmarks/bench_install.py --part bytecode      # uv, warm cache, compile or not
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
# What the first process of a test run or a command imports.
IMPORTS = "import torch, pyro, arviz, gpytorch, jax, numpyro, vi_dropout.verify, comparisons.protocols"


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
    if tool == "uv":
        return _uv_install(python, requirements, base_python, env, True), _freeze(python, env)
    t0 = time.perf_counter()
    _run([base_python, "-m", "venv", str(venv)], env)
    _run([str(python), "-m", "pip", "install", "-q", *requirements], env)
    seconds = time.perf_counter() - t0
    return seconds, _freeze(python, env)


def makefile_warm_imports() -> str:
    """The Python line of the Makefile's ``WARM_IMPORTS`` (what ``make install`` imports once)."""
    text = (REPO / "Makefile").read_text()
    match = re.search(r"^WARM_IMPORTS :=((?:.*\\\n)*.*)$", text, flags=re.MULTILINE)
    if match is None:
        raise SystemExit("error: no WARM_IMPORTS := ... in the Makefile")
    return " ".join(match.group(1).replace("\\\n", " ").split())


def _uv_install(python: Path, requirements: list[str], base_python: str, env: dict[str, str],
                compile_bytecode: bool, warm: bool = False) -> float:
    """Seconds to create the venv of ``python`` and install ``requirements`` into it with uv
    (then, with ``warm``, run the Makefile's ``WARM_IMPORTS`` with bytecode writing on)."""
    t0 = time.perf_counter()
    _run([base_python, "-m", "venv", str(python.parents[1])], env)
    _run([str(python), "-m", "pip", "install", "-q", "uv"], env)
    _run([str(python), "-m", "uv", "pip", "install", "-q", "--python", str(python),
          *(["--compile-bytecode"] if compile_bytecode else []), *requirements], env)
    if warm:
        writing = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        _run([str(python), "-c", makefile_warm_imports()], dict(writing, OMP_NUM_THREADS="1"))
    return time.perf_counter() - t0


def _import_seconds(python: Path, env: dict[str, str]) -> float:
    """Wall seconds of a new process that runs ``IMPORTS`` (bytecode writing on)."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    _run([str(python), "-c", IMPORTS], dict(env, OMP_NUM_THREADS="1"))
    return time.perf_counter() - t0


def bytecode_part(requirements: list[str], base_python: str, work: Path) -> None:
    """uv from a warm cache with and without ``--compile-bytecode``; the imports after each."""
    env = dict(os.environ, UV_CACHE_DIR=str(work / "cache-uv"))
    _uv_install(work / "venv-warmup" / "bin" / "python", requirements, base_python, env, True)  # fills the cache
    shutil.rmtree(work / "venv-warmup")
    rows = []
    variants = (("--compile-bytecode", True, False), ("no compilation", False, False),
                ("no compilation + WARM_IMPORTS (make install)", False, True))
    for k, (label, compile_bytecode, warm) in enumerate(variants):
        python = work / f"venv-{k}" / "bin" / "python"
        install_s = _uv_install(python, requirements, base_python, env, compile_bytecode, warm)
        first, second = _import_seconds(python, env), _import_seconds(python, env)
        rows.append((label, install_s, first, second))
        print(f"  {label}: install {install_s:.1f} s, imports {first:.1f} s then "
              f"{second:.1f} s", flush=True)
        shutil.rmtree(python.parents[1])
    base = rows[0][1] + rows[0][2]
    print(f"\nimports: {IMPORTS}\n\n| uv install (warm cache) | install (s) | first import (s) | "
          "later import (s) | install + first import (s) | ratio |\n|---|---|---|---|---|---|")
    for label, install_s, first, second in rows:
        print(f"| {label} | {install_s:.1f} | {first:.1f} | {second:.1f} | "
              f"{install_s + first:.1f} | {(install_s + first) / base:.2f} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=None,
                    help="requirements to install instead of the project's stack "
                         "(space-separated, e.g. 'six==1.16.0')")
    ap.add_argument("--torch-version", default="2.13.0")
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter the venvs are made from (default: this one)")
    ap.add_argument("--work-dir", default=None, help="where the venvs and caches go (deleted)")
    ap.add_argument("--part", choices=("installers", "bytecode"), default="installers",
                    help="installers: pip against uv, empty caches (default); bytecode: uv from "
                         "a warm cache with and without --compile-bytecode, and without it but "
                         "with the Makefile's WARM_IMPORTS")
    a = ap.parse_args(argv)
    requirements = (a.spec.split() if a.spec else
                    ["-e", f".{EXTRAS}", f"torch=={a.torch_version}"])
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="bench-install-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"installing {' '.join(requirements)} with Python "
          f"{subprocess.run([a.python, '-V'], capture_output=True, text=True).stdout.strip()}; "
          f"{os.cpu_count()} CPUs, {platform.platform()}, load {os.getloadavg()[0]:.2f}",
          flush=True)
    if a.part == "bytecode":
        try:
            bytecode_part(requirements, a.python, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
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
