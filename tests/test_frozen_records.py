"""The tiny run of every experiment gives the records frozen in ``tests/data/frozen_records``:
bit for bit on the machine that froze them, within a float32 rounding tolerance on any other.
Same random streams, same numbers: a refactor that changes a single value fails here (on the
freezing machine; elsewhere, one that changes a value by more than the cross-machine tolerance).

**Which machine.** The numeric kernels differ by CPU: MKL, oneDNN and ATen's vectorised kernels
pick a code path for the CPU's instruction set (AVX2, AVX-512, ...), and float32 training
amplifies their last-bit differences. ``tests/conftest.py`` and ``make test`` set
``MKL_CBWR=COMPATIBLE`` (MKL's Conditional Numerical Reproducibility: one code path whatever the
CPU), which removes MKL's share but not ATen's or oneDNN's. So the records are stored with a
fingerprint of the machine that froze them, ``machine.json``: the versions of torch, NumPy and
SciPy, ``torch.backends.cpu.get_cpu_capability()``, the CPU model name, a short hash of the CPU
flags in ``/proc/cpuinfo`` and ``MKL_CBWR`` (:data:`FINGERPRINT_FIELDS`; the commit, date, thread
count and platform stored beside them are not compared: one BLAS thread instead of two moved
only diagnose's stacking weights, within their :data:`ROUNDING` bound).

* Same fingerprint: the comparison is bit for bit, as below.
* Another fingerprint: every value is compared within :data:`CROSS_MACHINE` (``rtol`` 1e-3,
  ``atol`` 1e-9; for the rotated digit's ``mutual_information`` ``atol`` 2e-6, see
  :data:`CROSS_MACHINE_METRICS`), and the test warns (``UserWarning``) naming the fingerprint
  fields that differ. It is never skipped.

  Measured at commit d5ee01c, on an AVX-512 Xeon (avx512_fp16; torch 2.13.0, MKL 2024.2,
  oneDNN 3.12), against the records frozen before on an older CI machine without ``MKL_CBWR``:
  at most 9e-8 relative (uci), 4e-5 (gp-vs-dropout, ``smd[gap]``), 3e-8 (diagnose), 6e-8
  (pitfalls), 1.3e-7 (mauna-loa) and 2.8e-4 (rotated-digit, ``mutual_information``); under
  ``MKL_CBWR=COMPATIBLE`` 1.5e-6, 8.8e-5, 3e-9 (and a stacking weight of 0 became 1.4e-12), 4.5e-8,
  9e-8 and 3.6e-4. Other CPUs simulated on that machine under ``MKL_CBWR=COMPATIBLE``
  (``ATEN_CPU_CAPABILITY=avx2`` with ``ONEDNN_MAX_CPU_ISA=AVX2``, and ``default`` with ``SSE41``)
  against the records frozen on it: at most 7e-7 relative outside the rotated digit. Float32
  training amplifies last-bit differences of the vector kernels to these sizes, so ``rtol`` 1e-3
  leaves a margin of 11 or more. The exception: ``mutual_information`` is the difference of two
  float32 entropies near log 10 = 2.303 (float32 ulp 2.4e-7) and about 1e-3 itself, so a few ulps
  of those entropies are several 1e-4 of it (measured up to 4.8e-7 absolute, 7e-4 relative).

  What the tolerance still catches (measured, values beyond it): another seed (uci 11 of 28
  values, up to 0.5 relative; gp-vs-dropout 68 of 130; diagnose 72 of 114; mauna-loa 32 of 71),
  longer training (gp-vs-dropout epochs x0.011 for x0.01: 42 of 130, up to 3e-2), another number
  of MC samples in pitfalls (19 for 20: 19 of 72) and the rotated digit (5 for 4: 87 of 202). It
  need not catch one MC sample more or less out of 50 (uci: 51 moved 2 of 28 values beyond it, up
  to 5e-3, 49 none, up to 9e-4; gp-vs-dropout: none, up to 1.6e-4), and it does not catch a re-rounding in the last bits: only the
  freezing machine checks those. Discrete metrics (accuracy, ECE, predicted classes) move by whole steps when a float32
  probability crosses a bin edge or an argmax flips: not seen under ``MKL_CBWR=COMPATIBLE``, but
  without it (``MKL_CBWR=AVX2``) the rotated digit's ECE moved by one test image in 360. If that
  happens on the CI machine, re-freeze there.

**Freezing.** ``python -m tests.test_frozen_records --freeze`` (from the repository root of a
clean checkout: it imports ``comparisons`` from the working directory) runs every tiny command,
writes the tidy records of each to ``tests/data/frozen_records/<experiment>.csv`` and this
machine's fingerprint to ``machine.json``; ``--freeze uci,diagnose`` re-freezes some. It needs
``MKL_CBWR=COMPATIBLE`` (set here by default, as in ``tests/conftest.py``). The records were frozen
at commit db9e8fc (see ``machine.json``), on Python 3.12 with PyPI's torch 2.13.0 build and
ArviZ 1.3; the move from ArviZ 0.x changed only diagnose's and pitfalls' ArviZ numbers
(``elpd_diff`` is now the method's elpd minus the best's, <= 0; arviz-stats' tail ESS, LOO
standard errors and stacking weights differ from ArviZ 0.x's in the digits); the records of
uci, gp-vs-dropout, mauna-loa and rotated-digit stayed bit for bit. Before that at commit
d5ee01c, and at 7f5bc5c on the CI machine of the time, without ``MKL_CBWR``.

**What is compared.** Timing metrics (``*time*``, ``*wall*``, ``*seconds*``) and ``group_size``
(how many splits were computed together, which does not change a split's numbers) are left out;
everything else is compared with ``==`` on the float64 values as written (shortest round-trip
repr), with documented exceptions (:data:`ROUNDING`, which hold on every machine). They were
introduced against the records of 7f5bc5c and are kept, as bounds of the roundings that may move:
the Gaussian log-likelihood used to be written three times with three roundings
(``((y - mu) / sd)^2``, ``(y - mu)^2 / v``, ``precision * (y - mu)^2``) and is now written once
(:func:`comparisons.metrics.gaussian.gaussian_log_likelihood`, ``(y - mu)^2 / v``). The values
computed from it in the other two roundings moved in the last bits: Mauna Loa's ``mean_loglik``
by one ulp, and diagnose's LOO statistics by at most 2.3e-15 relative, its stacking weights (an
optimisation over those densities) by at most 1e-10 relative or 1e-11 absolute (they also move by
up to 1.2e-12 absolute with the number of BLAS threads). And the UCI
protocol's ``rmse_standard`` (the weight-averaged network's float32 prediction) depends on what
the process computed before it: with the same weights, inputs and keep_prob, a float32
``standard_dropout_predict`` gives results that differ in the last bit of a few entries depending
on the earlier float32 products in the process (seen when the protocol's steps were reorganised
to allow groups of splits: 4.5e-10 relative on yacht split 0; the weights, the MC samples and
every other metric stayed bit for bit), so it is compared within 1e-9 relative. The pitfalls'
``exact_elbo`` records were computed by an MLP-only negative ELBO until the one model / objective
path (2026-12-07): the same masks, noise and gap draws now go through the ELBO of every network
(``F.linear`` for ``x @ W.T + b``, the gap added after the KL), which moved
``elbo_minus_dropout_loss`` by at most 1.7e-16 relative and ``gradient_relative_difference`` (a
difference of two nearly equal gradients) by at most 4.4e-14; both are compared within 1e-12
relative. On the freezing machine those metrics are compared within exactly these bounds; every
other value bit for bit.
"""

from __future__ import annotations

import os

# as in tests/conftest.py, for `python -m tests.test_frozen_records --freeze` (which does not load
# it): MKL reads MKL_CBWR when it initialises, so this must precede the import of torch
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

import argparse  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from comparisons.cli.main import main  # noqa: E402

FROZEN = Path(__file__).parent / "data" / "frozen_records"
MACHINE = FROZEN / "machine.json"
KEYS = ["dataset", "method", "split", "metric"]

#: the tiny command line of each experiment (``--out`` and ``--no-progress`` are added)
COMMANDS = {
    "uci": ["uci", "--dataset", "yacht", "--splits", "0-1", "--epochs-multiplier", "0.25",
            "--num-samples", "50", "--methods", "mc_dropout,gp"],
    "gp-vs-dropout": ["gp-vs-dropout", "--dataset", "toy1d", "--toy-num-train", "40",
                      "--epochs-multiplier", "0.01", "--num-samples", "50", "--gp-iterations",
                      "3", "--max-grid", "1"],
    "diagnose": ["diagnose", "--dataset", "toy1d", "--smoke"],
    "pitfalls": ["pitfalls", "--iterations", "50", "--num-samples", "20", "--sizes", "10,40",
                 "--hmc-max-train", "10", "--hmc-chains", "2", "--hmc-warmup", "20",
                 "--hmc-samples", "20", "--hmc-processes", "1", "--hmc-max-tree-depth", "5"],
    "mauna-loa": ["mauna-loa", "--iterations", "5", "--num-samples", "4", "--hidden-layers", "1",
                  "--hidden-units", "8", "--keep-prob", "0.8", "--seed", "1",
                  "--gp-iterations", "3", "--data-stride", "16"],
    "rotated-digit": ["rotated-digit", "--epochs", "1", "--num-samples", "4"],
}

#: (experiment, metrics) compared within (rtol, atol) instead of exactly, on every machine; see
#: the module docstring
ROUNDING = {
    ("mauna-loa", ("mean_loglik",)): (1e-15, 0.0),
    ("diagnose", ("elpd_loo", "elpd_loo_se", "p_loo", "elpd_diff", "dse")): (1e-14, 1e-13),
    ("diagnose", ("weight",)): (1e-10, 1e-11),
    ("uci", ("rmse_standard",)): (1e-9, 0.0),
    ("pitfalls", ("elbo_minus_dropout_loss", "gradient_relative_difference")): (1e-12, 0.0),
}

#: (rtol, atol) of every value on a machine whose fingerprint differs from the frozen one: float32
#: training amplifies the last-bit differences of the CPU's vector kernels to at most 8.8e-5
#: relative (measured, see the module docstring); atol for values near 0 (a stacking weight of 0
#: became 1.4e-12)
CROSS_MACHINE = (1e-3, 1e-9)

#: (experiment, metrics) with a larger (rtol, atol) on another machine: the mutual information is
#: the difference of two float32 entropies near log 10 (ulp 2.4e-7), about 1e-3 itself, so a few
#: ulps of those entropies are several 1e-4 of it (measured up to 4.8e-7 absolute); 2e-6 is 8 ulps
CROSS_MACHINE_METRICS = {
    ("rotated-digit", ("mutual_information",)): (1e-3, 2e-6),
}

#: the fingerprint fields that must be equal for the bit-for-bit comparison
FINGERPRINT_FIELDS = ("torch", "numpy", "scipy", "cpu_capability", "cpu_model", "cpu_flags_sha256",
                      "mkl_cbwr")

#: the record files each experiment writes
RECORD_FILES = {"uci": ["records.csv"], "gp-vs-dropout": ["records.csv"],
                "diagnose": ["records.csv"], "pitfalls": ["records.csv"],
                "mauna-loa": ["records.csv"], "rotated-digit": ["records.csv"]}


def _read(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"split": str})
    if "split" not in df:
        df["split"] = df["angle"].astype(str) if "angle" in df else ""
    return df


def tidy_records(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, keep the five tidy columns, drop timing metrics, sort."""
    df = pd.concat([f[[*KEYS, "value"]] for f in frames])
    df = df[~df.metric.str.contains("time|wall|seconds|group_size")].copy()
    df["split"] = df["split"].fillna("").astype(str)
    return df.sort_values(KEYS).reset_index(drop=True)


def _cpuinfo() -> tuple[str, str]:
    """(model name, sha256 of the sorted, de-duplicated CPU flags, 12 hex digits) from
    /proc/cpuinfo (x86: ``model name`` and ``flags``; Arm: ``CPU part`` and ``Features``);
    ``platform.processor()`` and "" where there is none."""
    model, flags = "", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "CPU part") and not model:
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    digest = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:12] if flags else ""
    return model or platform.processor() or platform.machine(), digest


def machine_fingerprint() -> dict[str, str]:
    """What decides which numeric kernels run here (:data:`FINGERPRINT_FIELDS`)."""
    import numpy
    import scipy
    import torch

    model, flags = _cpuinfo()
    return {"torch": torch.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": model,
            "cpu_flags_sha256": flags, "mkl_cbwr": os.environ.get("MKL_CBWR", "")}


def fingerprint_differences(frozen: dict, here: dict) -> list[str]:
    """``field: frozen -> here`` for each fingerprint field that differs."""
    return [f"{k}: {frozen.get(k)!r} -> {here.get(k)!r}" for k in FINGERPRINT_FIELDS
            if frozen.get(k) != here.get(k)]


def run_tiny(name: str, out: Path) -> pd.DataFrame:
    """The tidy records of experiment ``name``'s tiny run, written under ``out``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*COMMANDS[name], "--out", str(out), "--no-progress"]) == 0
    return tidy_records([_read(out / f) for f in RECORD_FILES[name]])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_tiny_run_reproduces_frozen_records(name, tmp_path):
    got = run_tiny(name, tmp_path / name)
    frozen = tidy_records([_read(FROZEN / f"{name}.csv")])
    assert len(got) == len(frozen), f"{name}: {len(got)} records, frozen {len(frozen)}"
    assert got[KEYS].equals(frozen[KEYS]), f"{name}: other (dataset, method, split, metric) keys"
    differences = fingerprint_differences(json.loads(MACHINE.read_text())["fingerprint"],
                                          machine_fingerprint())
    rtol, atol = pd.Series(0.0, index=got.index), pd.Series(0.0, index=got.index)

    def widen(bounds: tuple[float, float], rows: pd.Series) -> None:
        rtol[rows], atol[rows] = rtol[rows].clip(lower=bounds[0]), atol[rows].clip(lower=bounds[1])

    if differences:
        warnings.warn(f"{name}: this machine is not the one that froze {FROZEN.name} "
                      f"({'; '.join(differences)}): values compared within rtol "
                      f"{CROSS_MACHINE[0]:g}, atol {CROSS_MACHINE[1]:g}, not bit for bit "
                      "(tests/test_frozen_records.py says why)", stacklevel=1)
        widen(CROSS_MACHINE, pd.Series(True, index=got.index))
    for (experiment, metrics), bounds in [*ROUNDING.items(),
                                          *(CROSS_MACHINE_METRICS.items() if differences else [])]:
        if experiment == name:
            widen(bounds, got["metric"].isin(metrics))
    a, b = got["value"], frozen["value"]
    exact = (a == b) | (a.isna() & b.isna())
    close = (a - b).abs() <= atol + rtol * b.abs()
    changed = got[~(exact | close)]
    assert changed.empty, f"{name}: {len(changed)} values changed, e.g.\n{changed.head()}\n" \
                          f"frozen:\n{frozen[~(exact | close)].head()}"
    # the tolerances are used only where documented: everything else is bit for bit
    assert exact[(rtol == 0) & (atol == 0)].all()


def freeze(names: list[str]) -> None:
    """Run the tiny commands of ``names``, write their tidy records to :data:`FROZEN` and this
    machine's fingerprint, with the commit and date of each experiment's records, to
    :data:`MACHINE` (see the module docstring)."""
    import torch

    import comparisons

    if os.environ.get("MKL_CBWR") != "COMPATIBLE":
        sys.exit(f"error: MKL_CBWR={os.environ.get('MKL_CBWR')!r}; the tests run under "
                 "MKL_CBWR=COMPATIBLE (tests/conftest.py, make test): freeze under it too")
    root = Path(__file__).resolve().parents[1]
    if Path(comparisons.__file__).resolve().parents[1] != root:
        sys.exit(f"error: comparisons imported from {comparisons.__file__}, not from {root}: "
                 "run `python -m tests.test_frozen_records --freeze` from the repository root")
    fingerprint = machine_fingerprint()
    record = json.loads(MACHINE.read_text()) if MACHINE.exists() else {}
    if set(names) != set(COMMANDS) and record.get("fingerprint") != fingerprint:
        sys.exit("error: the other experiments' records come from another machine (or none): "
                 "freeze them all (--freeze without experiments)")

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=False).stdout

    # the code the records come from: changes outside tests/ are recorded (freeze a clean checkout)
    modified = sorted(line[3:] for line in git("status", "--porcelain", "--", ".", ":!tests")
                      .splitlines() if line.strip())
    if modified:
        print(f"warning: freezing with files modified outside tests/: {modified}", file=sys.stderr)
    made = {"commit": git("rev-parse", "--short=12", "HEAD").strip(), "modified_outside_tests": modified,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            got = run_tiny(name, Path(tmp) / name)
            got.to_csv(FROZEN / f"{name}.csv", index=False)
            print(f"{name}: {len(got)} records -> {FROZEN / f'{name}.csv'}")
    record = {
        "about": "The machine that froze the records in this folder: tests/test_frozen_records.py "
                 "compares them bit for bit where these fingerprint fields are equal, within a "
                 "float32 tolerance (with a warning) elsewhere. Regenerate from the repository "
                 "root of a clean checkout: MKL_CBWR=COMPATIBLE python -m "
                 "tests.test_frozen_records --freeze",
        "fingerprint": fingerprint,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "frozen": {**record.get("frozen", {}), **{name: made for name in names}},
    }
    MACHINE.write_text(json.dumps(record, indent=2) + "\n")
    print(f"fingerprint -> {MACHINE}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--freeze", nargs="?", const=",".join(COMMANDS), metavar="EXPERIMENTS",
                        help="re-freeze these experiments (comma-separated; default: all) and "
                             "the machine fingerprint")
    parser.add_argument("--fingerprint", action="store_true",
                        help="print this machine's fingerprint and how it differs from the frozen")
    args = parser.parse_args()
    if args.fingerprint:
        here = machine_fingerprint()
        print(json.dumps(here, indent=2))
        if MACHINE.exists():
            frozen = json.loads(MACHINE.read_text())["fingerprint"]
            print("\n".join(fingerprint_differences(frozen, here))
                  or "the machine that froze the records (bit for bit)")
    if args.freeze:
        unknown = set(args.freeze.split(",")) - set(COMMANDS)
        if unknown:
            parser.error(f"unknown experiments {sorted(unknown)}; known: {list(COMMANDS)}")
        freeze(args.freeze.split(","))
    if not (args.freeze or args.fingerprint):
        parser.print_help()
