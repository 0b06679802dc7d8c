"""Profile one MC dropout UCI protocol cell: where the time goes, and what would halve it.

One cell of :func:`comparisons.protocols.uci.run_uci_cell` (one data set, one split) is timed
phase by phase through the protocol's public functions, in the order the cell runs them
(``hyperparameter_grid`` -> ``validation_split`` / ``standardize`` -> ``train_grid`` (the 12
grid networks, batched) -> ``score_networks`` (validation, ``T`` MC samples each) ->
``train_grid`` (the selected pair, full training split) -> ``score_networks`` (test, ``T``)).
``select_and_retrain`` runs the first four as one call: its inner steps are timed here through
the public functions it calls, not through it.

Printed, all measured in ONE run, in one process with ``--threads`` torch threads (default 1, as
each of the protocol's worker processes):

1. the wall time of each phase at ``--epochs-multiplier m`` and the training phases again at
   ``2m`` (training time is linear in the epochs: the ratio should be about 2), each phase's share
   of the cell, and an EXTRAPOLATION to x10 and x100 (training phases scaled by the epochs,
   prediction by 10,000 / T); then an EXTRAPOLATION of the whole nine-set x100 protocol (20
   splits; protein 5) from short probes of every data set (``--probe-epochs`` epochs, ``--probe-samples`` MC
   samples, scaled linearly);
2. a cProfile of the grid training (``train_batched`` via ``train_grid``, ``--profile-epochs``
   epochs), its self time grouped into forward matmuls, backward, loss, Adam, mask random
   numbers, mask application, shuffle / gather, divergence check and Python interpreter time,
   the top ``--top`` functions, and the top ATen ops of ``torch.profiler`` (share of the
   profiled wall time spent inside ATen ops);
3. candidate speed-ups timed side by side on ``--variant-epochs`` epochs (median of
   ``--repeats`` interleaved repeats), as ratios variant / default, and the x100 cell each would
   give (phase shares from 1.): float64, larger minibatches (changes the method),
   fewer grid points (``max_grid``, changes the method), several splits' networks in one
   ``train_batched`` call (same networks; needs cells that hold several splits), validation
   scoring with ``T / 10`` samples (changes the selection's noise, not the test predictions),
   2 torch threads (on a shorter training: on a busy machine a call with more threads than free
   cores can take 100x longer), and with ``--try-compile`` ``torch.compile(train_batched)``
   (measured on the 2-core machine: 26-55 s of compilation, then no faster; off by default).

Usage::

    python benchmarks/profile_uci_cell.py                        # kin8nm split 0, x1 and x2, T = 10,000
    python benchmarks/profile_uci_cell.py --dataset protein --epochs-multiplier 0.1 \\
        --num-samples 1000 --variant-epochs 2 --profile-epochs 4 --group-splits 4,5 \\
        --probe-epochs 0 --no-thread-variant     # about a minute
    python benchmarks/profile_uci_cell.py --quick                # tiny smoke run (Boston
                                                                 # split 0, 1-epoch probes)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comparisons.datasets.uci import (  # noqa: E402
    UCI_DATASETS,
    load_uci,
    resolve_uci_name,
    standardize,
    validation_split,
)
from comparisons.protocols.uci import (  # noqa: E402
    MCDropoutUCISettings,
    hyperparameter_grid,
    protocol_seed,
    score_networks,
    train_grid,
)
from vi_dropout.infer.elbo import weight_decay  # noqa: E402
from vi_dropout.training import train_batched  # noqa: E402

X100 = 100.0
PHASES = ("load + split + standardise", "grid training (12 nets, batched)",
          "validation scoring (12 nets x T)", "retraining (1 net, full split)",
          "test prediction (T)")
TRAIN_PHASES = (PHASES[1], PHASES[3])


def _epochs(raw, multiplier: float) -> int:
    """The cell's epochs, exactly as ``select_and_retrain`` computes them."""
    return max(1, int(round(raw.n_epochs * multiplier)))


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# 1. the phases of one cell
# ----------------------------------------------------------------------------------------------

def cell_phases(name: str, split: int, protocol: MCDropoutUCISettings, m: float, repeats: int):
    """Time the phases of one cell at multiplier ``m`` (public functions, cell order), then the
    two training phases again at ``m`` and ``2m``, interleaved, ``repeats`` times in all at each
    (the cell-order run is the first sample at ``m``; prediction does not depend on the epochs).

    Returns ``(t, train, info)``: ``t[phase]`` seconds of the cell-order run, ``train[mult][phase]``
    the training phases' samples, ``info`` the objects the later sections reuse."""
    t0 = time.perf_counter()
    raw = load_uci(name, split)
    grid = hyperparameter_grid(raw, protocol)
    seed0 = protocol_seed(protocol, raw.split)
    val = validation_split(raw, fraction=protocol.validation_fraction)
    std_val = standardize(val)
    std = standardize(raw)
    t = {PHASES[0]: time.perf_counter() - t0}
    epochs = _epochs(raw, m)
    torch.manual_seed(protocol.seed)
    (res, kps), t[PHASES[1]] = _timed(train_grid, std_val, grid, epochs, protocol, seed0,
                                      raw.n_hidden)
    scores, t[PHASES[2]] = _timed(score_networks, res, kps, grid, std_val, std_val.x_test,
                                  val.y_test, protocol, seed0 + 1)
    valid = [(float(s.mean_log_likelihood), e) for e, s in enumerate(scores) if s is not None]
    if not valid:
        raise SystemExit(f"{name} split {split}: every grid point diverged")
    best = max(valid)[1]
    (final, kps_full), t[PHASES[3]] = _timed(train_grid, std, [grid[best]], epochs, protocol,
                                             seed0 + 500, raw.n_hidden)
    test, t[PHASES[4]] = _timed(score_networks, final, kps_full, [grid[best]], std, std.x_test,
                                raw.y_test, protocol, seed0 + 501)
    train = {m: {p: [t[p]] for p in TRAIN_PHASES}, 2 * m: {p: [] for p in TRAIN_PHASES}}
    for i in range(2 * repeats - 1):
        mult = 2 * m if i % 2 == 0 else m
        ep = _epochs(raw, mult)
        train[mult][PHASES[1]].append(_timed(train_grid, std_val, grid, ep, protocol, seed0,
                                             raw.n_hidden)[1])
        train[mult][PHASES[3]].append(_timed(train_grid, std, [grid[best]], ep, protocol,
                                             seed0 + 500, raw.n_hidden)[1])
    info = dict(raw=raw, grid=grid, seed0=seed0, val=val, std_val=std_val, std=std, res=res,
                kps=kps, best=best, scores=scores, test=test[0])
    return t, train, info


def extrapolate(t, raw, m, mult: float, num_samples: int):
    """Phase times at multiplier ``mult`` and T = 10,000 from those at ``m`` and ``num_samples``
    (EXTRAPOLATION): training phases scaled by the epochs, prediction by ``10000 / num_samples``
    (linear in T), load unchanged."""
    scale_e = _epochs(raw, mult) / _epochs(raw, m)
    out = {}
    for p in PHASES:
        if p in TRAIN_PHASES:
            out[p] = t[p] * scale_e
        elif p in (PHASES[2], PHASES[4]):
            out[p] = t[p] * 10_000 / num_samples
        else:
            out[p] = t[p]
    return out


def probe_dataset(name: str, protocol: MCDropoutUCISettings, probe_epochs: int, probe_samples: int):
    """Short run of every phase of split 0 of ``name``; per-epoch and per-sample costs."""
    p = replace(protocol, num_samples=probe_samples)
    t0 = time.perf_counter()
    raw = load_uci(name, 0)
    grid = hyperparameter_grid(raw, p)
    val = validation_split(raw, fraction=p.validation_fraction)
    std_val, std = standardize(val), standardize(raw)
    t_load = time.perf_counter() - t0
    seed0 = protocol_seed(p, 0)
    (res, kps), t_grid = _timed(train_grid, std_val, grid, probe_epochs, p, seed0, raw.n_hidden)
    _, t_val = _timed(score_networks, res, kps, grid, std_val, std_val.x_test, val.y_test, p,
                      seed0 + 1)
    (fin, kf), t_re = _timed(train_grid, std, grid[:1], probe_epochs, p, seed0 + 500, raw.n_hidden)
    _, t_test = _timed(score_networks, fin, kf, grid[:1], std, std.x_test, raw.y_test, p,
                       seed0 + 501)
    e100 = _epochs(raw, X100)
    scale_t = 10_000 / probe_samples
    cell = (t_load + (t_grid + t_re) * e100 / probe_epochs + (t_val + t_test) * scale_t)
    return dict(name=name, n_train=len(std.x_train), hidden=raw.n_hidden, splits=raw.n_splits,
                e100=e100, grid_epoch=t_grid / probe_epochs, re_epoch=t_re / probe_epochs,
                val_1k=t_val * 1000 / probe_samples, test_1k=t_test * 1000 / probe_samples,
                cell=cell, grid_points=len(grid))


@dataclass(frozen=True)
class Phases:
    """Section 1's measurements and the objects of the cell that the later sections reuse."""

    raw: object
    grid: list
    info: dict
    t_m: dict
    x100: dict
    cell_100: float


def report_phases(name: str, a: argparse.Namespace, protocol: MCDropoutUCISettings) -> Phases:
    """Section 1: time and print the phases of one cell, with the x10 / x100 extrapolation."""
    m = a.epochs_multiplier
    t_cell, train, info = cell_phases(name, a.split, protocol, m, a.repeats)
    raw, grid = info["raw"], info["grid"]
    e_m, e_2m, e10, e100 = (_epochs(raw, v) for v in (m, 2 * m, 10, X100))
    med = {mult: {p: statistics.median(v) for p, v in ph.items()} for mult, ph in train.items()}
    t_m = {**t_cell, **med[m]}  # training phases: median of the repeats at m
    x10 = extrapolate(t_m, raw, m, 10, a.num_samples)
    x100 = extrapolate(t_m, raw, m, X100, a.num_samples)
    cell_m, cell_10, cell_100 = (sum(v.values()) for v in (t_m, x10, x100))
    print(f"\n## 1. Phases of one cell (measured at x{m:g} = {e_m} epochs and x{2 * m:g} = "
          f"{e_2m} epochs; T = {a.num_samples})\n")
    print(f"{len(grid)} grid points, N_train {len(info['std'].x_train)} (grid: "
          f"{len(info['std_val'].x_train)}, validation {len(info['std_val'].x_test)}), test "
          f"{len(info['std'].x_test)}, {raw.n_hidden} hidden units. The phases ran once in the "
          f"cell's order; the two training phases then again at x{m:g} and x{2 * m:g}, "
          f"interleaved: medians of {a.repeats} runs each (cell-order run included). Training "
          f"time is linear in the epochs (ratio x{2 * m:g} / x{m:g}: expect 2.0); prediction "
          f"does not depend on them (timed once).\n")
    print(f"| phase | x{m:g} (s) | share x{m:g} | x{2 * m:g} (s) | ratio x{2 * m:g}/x{m:g} | "
          f"x10 EXTRAPOLATED (s) | share x10 | x100 EXTRAPOLATED (s) | share x100 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in PHASES:
        two = f"{med[2 * m][p]:.3f}" if p in TRAIN_PHASES else "-"
        ratio = f"{med[2 * m][p] / t_m[p]:.2f}" if p in TRAIN_PHASES else "-"
        print(f"| {p} | {t_m[p]:.3f} | {t_m[p] / cell_m:.1%} | {two} | {ratio} | "
              f"{x10[p]:.1f} | {x10[p] / cell_10:.1%} | {x100[p]:.1f} | {x100[p] / cell_100:.1%} |")
    print(f"| **cell** | {cell_m:.3f} | 100% | | | {cell_10:.1f} | 100% | **{cell_100:.1f}** "
          f"| 100% |")
    x100_from_2m = sum(med[2 * m][p] * e100 / e_2m for p in TRAIN_PHASES)
    print(f"\nx10 = {e10}, x100 = {e100} epochs. EXTRAPOLATION: training phases x epochs / "
          f"{e_m}, prediction x 10000/T = {10_000 / a.num_samples:g} (linear in T), load "
          f"unchanged. From the x{2 * m:g} medians the two training phases would give "
          f"{x100_from_2m:.1f} s at x100 (from x{m:g}: {x100[PHASES[1]] + x100[PHASES[3]]:.1f} s). "
          f"Cell-order run alone: grid {t_cell[PHASES[1]]:.3f} s, retrain "
          f"{t_cell[PHASES[3]]:.3f} s. Selected pair: dropout rate {grid[info['best']][0]:g}, "
          f"tau {grid[info['best']][1]:g}; test RMSE {float(info['test'].rmse):.4f}, test LL "
          f"{float(info['test'].mean_log_likelihood):.4f} (x{m:g}, only a sanity check).")
    return Phases(raw=raw, grid=grid, info=info, t_m=t_m, x100=x100, cell_100=cell_100)


def report_nine_sets(name: str, a: argparse.Namespace, protocol: MCDropoutUCISettings,
                     cell_100: float) -> None:
    """The nine-set x100 protocol extrapolated from short probes (skipped at 0 probe epochs)."""
    if a.probe_epochs <= 0:
        return
    print("\n### Whole nine-set protocol at x100 - EXTRAPOLATION from short probes\n")
    print(f"Each data set, split 0: {a.probe_epochs} epochs of grid training and of "
          f"retraining, validation/test scoring with T = {a.probe_samples}; scaled to x100 "
          f"epochs and T = 10,000, times the number of splits. Cell-seconds at 1 thread; the "
          f"protocol runs 2 worker processes, so its wall time is about half the sum on an "
          f"otherwise idle 2-core machine (less if the last, largest cells run alone).\n")
    print("| data set | N train | hidden | x100 epochs | splits | grid s/epoch | "
          "retrain s/epoch | val s per 1k T | test s per 1k T | cell x100 (s, est.) | "
          "all splits (s, est.) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    probes = []
    for ds in UCI_DATASETS:
        pr = probe_dataset(ds, protocol, a.probe_epochs, a.probe_samples)
        probes.append(pr)
        print(f"| {ds} | {pr['n_train']} | {pr['hidden']} | {pr['e100']} | {pr['splits']} | "
              f"{pr['grid_epoch']:.4f} | {pr['re_epoch']:.4f} | {pr['val_1k']:.3f} | "
              f"{pr['test_1k']:.3f} | {pr['cell']:.0f} | {pr['cell'] * pr['splits']:.0f} |")
    total = sum(pr["cell"] * pr["splits"] for pr in probes)
    n_cells = sum(pr["splits"] for pr in probes)
    mine = next(pr for pr in probes if pr["name"] == name)
    print(f"| **all nine** | | | | {n_cells} | | | | | | **{total:.0f}** "
          f"(= {total / 3600:.2f} h; / 2 workers ~ {total / 7200:.2f} h wall) |")
    print(f"\nCheck of the probe: {name} split 0 probe gives a x100 cell of "
          f"{mine['cell']:.0f} s; the phase measurement above (split {a.split}) "
          f"extrapolates to {cell_100:.0f} s.")


# ----------------------------------------------------------------------------------------------
# 2. inside the training phase
# ----------------------------------------------------------------------------------------------

_MATMULS = ("baddbmm", "bmm", "addmm", "matmul", " mm")


def _category(builtin: str, caller_file: str, caller: str) -> tuple[str, str]:
    """(group, category) of the self time of a builtin called from ``caller``."""
    mm = any(k in builtin for k in _MATMULS)
    base = os.path.basename(caller_file)
    if "threshold_backward" in builtin:  # called through torch's OpOverloadPacket.__call__
        return ("backward", "backward elementwise (threshold_backward, bias sums, decay)")
    if base == "drop_stream.py":
        return "mask/random generation", "drop positions (DropStream: rand, log1p, cumsum, ...)"
    if base == "batched.py":
        if caller == "_forward":
            return ("forward", "forward matmuls (baddbmm)" if mm else
                    "forward elementwise (ReLU, 0/1 masks, 1/keep_prob)")
        if caller == "_backward":
            return ("backward", "backward matmuls (bmm, baddbmm_)" if mm else
                    "backward elementwise (threshold_backward, bias sums, decay)")
        if caller in ("_minibatch", "_data_loss_and_grad", "<genexpr>", "<lambda>"):
            return "forward", "loss and L2 term"
        if caller == "adam_step":
            return "Adam update", "Adam update (lerp_, addcmul_, sqrt, addcdiv_)"
        if caller == "draw":
            if "randperm" in builtin:
                return "minibatch gather/shuffle", "shuffle (randperm per network and epoch)"
            if "index_select" in builtin:
                return "minibatch gather/shuffle", "gather shuffled rows (index_select)"
            return "mask/random generation", "apply drops to masks/inputs (index_fill_, fill_)"
        if caller == "_train_epoch":
            return "Python overhead", "divergence check per minibatch (isfinite, any, bool)"
        if caller in ("views", "num_active", "epoch"):
            return "Python overhead", "tensor views and bookkeeping per minibatch"
    return "other", "other (initialisation, checks, results)"


def profile_training(std_val, grid, epochs, protocol, seed0, hidden, top: int):
    """cProfile of ``train_grid`` (-> ``train_batched``); returns printable rows."""
    (_, _), wall = _timed(train_grid, std_val, grid, epochs, protocol, seed0, hidden)  # warm
    (_, _), wall = _timed(train_grid, std_val, grid, epochs, protocol, seed0, hidden)
    prof = cProfile.Profile()
    prof.enable()
    train_grid(std_val, grid, epochs, protocol, seed0, hidden)
    prof.disable()
    stats = pstats.Stats(prof)
    cats = defaultdict(float)
    groups = {}
    total = 0.0
    for (file, _line, fname), (_cc, _nc, tt, _ct, callers) in stats.stats.items():
        total += tt
        if file == "~":  # a builtin: attribute its self time to each caller
            known = 0.0
            for (cfile, _cl, cname), caller_stats in callers.items():
                ctt = caller_stats[2]
                g, c = _category(fname, cfile, cname)
                cats[c] += ctt
                groups[c] = g
                known += ctt
            if tt - known > 1e-9:
                cats["other (initialisation, checks, results)"] += tt - known
                groups["other (initialisation, checks, results)"] = "other"
        else:
            c = "Python interpreter (self time of Python functions)"
            cats[c] += tt
            groups[c] = "Python overhead"
    rows = sorted(((groups[c], c, t) for c, t in cats.items()), key=lambda r: -r[2])
    by_group = defaultdict(float)
    for g, _c, t in rows:
        by_group[g] += t
    lines = []
    stats.sort_stats("tottime")
    for func in stats.fcn_list[:top]:
        cc, nc, tt, ct, _ = stats.stats[func]
        file, line, fname = func
        where = fname if file == "~" else f"{os.path.relpath(file, REPO) if file.startswith(str(REPO)) else os.path.basename(file)}:{line}({fname})"
        lines.append((where, nc, tt, ct))
    return wall, total, rows, dict(by_group), lines


def torch_profile_training(std_val, grid, epochs, protocol, seed0, hidden, top: int):
    """ATen op self times of the grid training (``torch.profiler``, CPU)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        train_grid(std_val, grid, epochs, protocol, seed0, hidden)
        wall = time.perf_counter() - t0
    ev = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ev) / 1e6
    rows = sorted(((e.key, e.count, e.self_cpu_time_total / 1e6) for e in ev), key=lambda r: -r[2])
    return wall, total, rows[:top]


def report_training_profile(a: argparse.Namespace, protocol: MCDropoutUCISettings,
                            phases: Phases) -> None:
    """Section 2: print the cProfile and torch.profiler tables of the grid training."""
    pe, grid, info = a.profile_epochs, phases.grid, phases.info
    std_val, seed0, hidden = info["std_val"], info["seed0"], phases.raw.n_hidden
    wall, prof_total, rows, by_group, lines = profile_training(std_val, grid, pe, protocol,
                                                               seed0, hidden, a.top)
    print(f"\n## 2. Inside the grid training: cProfile of train_grid -> train_batched "
          f"({len(grid)} nets, {pe} epochs)\n")
    print(f"Unprofiled wall {wall:.3f} s; under cProfile {prof_total:.3f} s (cProfile adds a "
          f"fixed cost per Python-level call, so the Python share below is an upper bound). "
          f"Self time of builtins is attributed to the library function that called them.\n")
    print("| group | category | self time (s) | share |")
    print("|---|---|---|---|")
    for g, c, t in rows:
        print(f"| {g} | {c} | {t:.3f} | {t / prof_total:.1%} |")
    print("\n| group (summed) | self time (s) | share |")
    print("|---|---|---|")
    for g, t in sorted(by_group.items(), key=lambda kv: -kv[1]):
        print(f"| {g} | {t:.3f} | {t / prof_total:.1%} |")
    print(f"\nTop {a.top} functions by self time (cProfile):\n")
    print("| function | calls | self (s) | cumulative (s) |")
    print("|---|---|---|---|")
    for where, nc, tt, ct in lines:
        print(f"| `{where}` | {nc} | {tt:.3f} | {ct:.3f} |")
    twall, aten, ops = torch_profile_training(std_val, grid, pe, protocol, seed0, hidden, a.top)
    print(f"\ntorch.profiler (CPU), same training: wall under the profiler {twall:.3f} s "
          f"(unprofiled {wall:.3f} s), ATen op self time {aten:.3f} s = {aten / twall:.0%} of "
          f"the profiled wall; the other {1 - aten / twall:.0%} is Python, dispatch and the "
          f"profiler itself. Top {a.top} ops by self time:\n")
    print("| ATen op | calls | self (s) | share of ATen time |")
    print("|---|---|---|---|")
    for key, count, t in ops:
        print(f"| `{key}` | {count} | {t:.3f} | {t / aten:.1%} |")


# ----------------------------------------------------------------------------------------------
# 3. candidate speed-ups
# ----------------------------------------------------------------------------------------------

def _grouped_grid(stds, grid, epochs, protocol, seed0s, hidden):
    """The grids of several splits (same N) as ONE ``train_batched`` call (public arguments:
    one network per (split, grid point), its own rows, seed and weight decay)."""
    dtype = getattr(torch, protocol.dtype)
    xs, ys, kps, regs, seeds = [], [], [], [], []
    for std, s0 in zip(stds, seed0s):
        x = torch.tensor(std.x_train, dtype=dtype)
        y = torch.tensor(std.y_train, dtype=dtype)
        for e, (dr, tau) in enumerate(grid):
            xs.append(x)
            ys.append(y)
            kps.append(1.0 - dr)
            regs.append(weight_decay(protocol.prior_length_scale, 1.0 - dr, x.shape[0], tau))
            seeds.append(s0 + e)
    return train_batched(torch.stack(xs), torch.stack(ys), keep_prob=kps, reg=regs, seeds=seeds,
                         hidden=(hidden,), epochs=epochs, batch_size=protocol.batch_size)


def _with_threads(n, fn):
    def run():
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(old)
    return run


def time_interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, the calls interleaved (same machine state)."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


@dataclass
class Variants:
    """Section 3's candidate trainings: (grid, retrain or None) callables and table notes."""

    fns: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)  # grouped-splits variant -> number of splits
    grouped_vals: list = field(default_factory=list)  # the grouped splits' validation data
    grouped_seeds: list = field(default_factory=list)


@dataclass
class Speedups:
    """Section 3's median seconds of each variant (in table order) and its table notes."""

    grid: dict
    retrain: dict
    notes: dict


@dataclass(frozen=True)
class SmallValidation:
    """The validation scoring with T / 10 samples, against section 1's with T."""

    num_samples: int
    seconds: float
    ratio: float
    same_pick: bool


def build_variants(name: str, a: argparse.Namespace, protocol: MCDropoutUCISettings,
                   phases: Phases) -> Variants:
    """The default training and its dtype, minibatch, grid-size and grouped-splits variants."""
    ve, grid, info = a.variant_epochs, phases.grid, phases.info
    std_val, std, seed0, hidden = info["std_val"], info["std"], info["seed0"], phases.raw.n_hidden
    pair = [grid[info["best"]]]

    def grid_fn(p, g=grid):
        return lambda: train_grid(std_val, g, ve, p, seed0, hidden)

    def retrain_fn(p):
        return lambda: train_grid(std, pair, ve, p, seed0 + 500, hidden)

    def variant(**kw):
        return replace(protocol, **kw)

    v = Variants()
    v.fns["default"] = (grid_fn(protocol), retrain_fn(protocol))
    v.notes["default"] = (f"{a.threads} thread, float32, batch 128, {len(grid)} grid points",
                          "-")
    other_dtype = "float64" if protocol.dtype == "float32" else "float32"
    v.fns["dtype"] = (grid_fn(variant(dtype=other_dtype)),
                      retrain_fn(variant(dtype=other_dtype)))
    v.notes["dtype"] = (other_dtype, "no (rounding only)")
    for bs in (256, 512):
        v.fns[f"batch{bs}"] = (grid_fn(variant(batch_size=bs)),
                               retrain_fn(variant(batch_size=bs)))
        v.notes[f"batch{bs}"] = (f"minibatch {bs}", "YES: fewer Adam steps per epoch")
    for k in (6, 3):
        if k < len(grid):
            pk = variant(max_grid=k)
            v.fns[f"grid{k}"] = (grid_fn(pk, hyperparameter_grid(phases.raw, pk)), None)
            v.notes[f"grid{k}"] = (f"max_grid={k} (first {k} grid points)",
                                   "YES: smaller hyper-parameter search")
    add_grouped_variants(v, name, a, protocol, phases)
    return v


def add_grouped_variants(v: Variants, name: str, a: argparse.Namespace, protocol: MCDropoutUCISettings,
                         phases: Phases) -> None:
    """Add to ``v`` the variants that train several splits' networks in one call."""
    ve, grid, raw = a.variant_epochs, phases.grid, phases.raw
    hidden, pair = raw.n_hidden, [grid[phases.info["best"]]]
    sizes = sorted({min(int(g), raw.n_splits) for g in a.group_splits.split(",") if g.strip()})
    sizes = [g for g in sizes if g > 1]
    if not sizes:
        return
    splits = [(a.split + i) % raw.n_splits for i in range(max(sizes))]
    raws = [load_uci(name, s) for s in splits]
    vals = [standardize(validation_split(r, fraction=protocol.validation_fraction))
            for r in raws]
    fulls = [standardize(r) for r in raws]
    s0s = [protocol_seed(protocol, s) for s in splits]
    if (len({len(val.x_train) for val in vals}) != 1
            or len({len(f.x_train) for f in fulls}) != 1):
        print("\n(splits of different sizes: the grouped-splits variant is skipped)")
        return
    v.grouped_vals, v.grouped_seeds = vals, s0s
    for G in sizes:
        v.groups[f"group{G}"] = G
        v.fns[f"group{G}"] = (
            partial(_grouped_grid, vals[:G], grid, ve, protocol, s0s[:G], hidden),
            partial(_grouped_grid, fulls[:G], pair, ve, protocol,
                    [s + 500 for s in s0s[:G]], hidden))
        v.notes[f"group{G}"] = (
            f"{G} splits' networks in one train_batched call (time / {G})",
            "no (same networks up to rounding); a cell must hold several splits")


def time_variants(v: Variants, repeats: int) -> Speedups:
    """Median seconds of every variant, interleaved; grouped variants per split."""
    med_grid = time_interleaved({k: f[0] for k, f in v.fns.items()}, repeats)
    med_re = time_interleaved({k: f[1] for k, f in v.fns.items() if f[1] is not None}, repeats)
    for k, G in v.groups.items():
        med_grid[k] /= G
        med_re[k] /= G
    return Speedups(grid=med_grid, retrain=med_re, notes=dict(v.notes))


def grouped_nets_identical(v: Variants, a: argparse.Namespace, protocol: MCDropoutUCISettings,
                           phases: Phases) -> bool | None:
    """Whether the grouped call trains the first split's networks bit-identically (None: none)."""
    if not v.groups:
        return None
    ve, grid, info, hidden = a.variant_epochs, phases.grid, phases.info, phases.raw.n_hidden
    G = min(v.groups.values())
    grouped = _grouped_grid(v.grouped_vals[:G], grid, ve, protocol, v.grouped_seeds[:G], hidden)
    alone = train_grid(info["std_val"], grid, ve, protocol, info["seed0"], hidden)[0]
    return all(torch.equal(w[: len(grid)], w1) for w, w1 in
               zip(grouped.weights + grouped.biases, alone.weights + alone.biases))


def add_thread_variant(s: Speedups, a: argparse.Namespace, protocol: MCDropoutUCISettings,
                       phases: Phases) -> None:
    """Add the other thread count's row to ``s``, timed on a shorter training (if enabled)."""
    # On a busy machine a call with more threads than free cores can take 100x longer, so it
    # is timed on a shorter training against its own default, interleaved.
    if not a.thread_variant:
        return
    ve, grid, info, hidden = a.variant_epochs, phases.grid, phases.info, phases.raw.n_hidden
    std_val, std, seed0 = info["std_val"], info["std"], info["seed0"]
    pair = [grid[info["best"]]]
    te = max(1, ve // 5)
    other = 2 if a.threads == 1 else 1
    thr = time_interleaved({
        "d_grid": lambda: train_grid(std_val, grid, te, protocol, seed0, hidden),
        "t_grid": _with_threads(other, lambda: train_grid(std_val, grid, te, protocol, seed0,
                                                           hidden)),
        "d_re": lambda: train_grid(std, pair, te, protocol, seed0 + 500, hidden),
        "t_re": _with_threads(other, lambda: train_grid(std, pair, te, protocol, seed0 + 500,
                                                         hidden)),
    }, a.repeats)
    s.grid["threads"] = thr["t_grid"] / thr["d_grid"] * s.grid["default"]
    s.retrain["threads"] = thr["t_re"] / thr["d_re"] * s.retrain["default"]
    s.notes["threads"] = (
        f"{other} torch threads in one process ({te} epochs vs {a.threads} thread(s) "
        f"interleaved: {thr['t_grid']:.3f} vs {thr['d_grid']:.3f} s grid; seconds shown "
        f"scaled to {ve} epochs)",
        "no; but the protocol already runs 2 single-thread workers on the 2 cores")


def add_compile_variant(s: Speedups, a: argparse.Namespace, protocol: MCDropoutUCISettings,
                        phases: Phases) -> None:
    """Add the ``torch.compile(train_batched)`` grid row to ``s`` (with ``--try-compile``)."""
    if not a.try_compile:
        return
    ve, grid, info, hidden = a.variant_epochs, phases.grid, phases.info, phases.raw.n_hidden
    std_val, seed0 = info["std_val"], info["seed0"]
    compiled = torch.compile(train_batched)
    x = torch.tensor(std_val.x_train, dtype=torch.float32)
    y = torch.tensor(std_val.y_train, dtype=torch.float32)
    kps = [1.0 - dr for dr, _ in grid]
    regs = [weight_decay(protocol.prior_length_scale, kp, len(x), tau)
            for kp, (_, tau) in zip(kps, grid)]

    def comp():
        return compiled(x, y, keep_prob=kps, reg=regs, seeds=[seed0 + e for e in
                                                             range(len(grid))],
                        hidden=(hidden,), epochs=ve, batch_size=protocol.batch_size)
    try:
        _, t_compile = _timed(comp)
        s.grid["compile"] = time_interleaved({"c": comp}, a.repeats)["c"]
        s.notes["compile"] = (f"torch.compile(train_batched) (first call incl. compilation "
                              f"{t_compile:.0f} s)", "no")
    except Exception as exc:  # noqa: BLE001 - report and skip
        print(f"\ntorch.compile(train_batched) failed: {type(exc).__name__}: {exc}"[:500])


def validation_small_t(a: argparse.Namespace, protocol: MCDropoutUCISettings,
                       phases: Phases) -> SmallValidation:
    """Time the validation scoring with T / 10 samples; does it select the same pair?"""
    info, grid = phases.info, phases.grid
    t_small = max(1, a.num_samples // 10)
    p_small = replace(protocol, num_samples=t_small)
    small, t_val_small = _timed(score_networks, info["res"], info["kps"], grid, info["std_val"],
                                info["std_val"].x_test, info["val"].y_test, p_small,
                                info["seed0"] + 1)
    valid = [(float(s.mean_log_likelihood), e) for e, s in enumerate(small) if s is not None]
    return SmallValidation(num_samples=t_small, seconds=t_val_small,
                           ratio=t_val_small / phases.t_m[PHASES[2]],
                           same_pick=max(valid)[1] == info["best"])


def _projected(x100: dict, r_grid: float = 1.0, r_re: float = 1.0, r_v: float = 1.0) -> float:
    """The x100 cell with the grid, retraining and validation phases scaled by the ratios."""
    return (x100[PHASES[0]] + x100[PHASES[1]] * r_grid + x100[PHASES[2]] * r_v
            + x100[PHASES[3]] * r_re + x100[PHASES[4]])


def print_speedup_table(a: argparse.Namespace, phases: Phases, groups: dict, s: Speedups,
                        small: SmallValidation, same_nets: bool | None) -> None:
    """Print section 3's table of the variants, ratios and projected x100 cells."""
    ve, n_grid, x100, cell_100 = a.variant_epochs, len(phases.grid), phases.x100, phases.cell_100
    print(f"\n## 3. Candidate speed-ups, measured side by side ({ve} epochs of the grid training "
          f"on the grid rows and of the retraining on the full split; median of {a.repeats} "
          f"interleaved repeats; ratio = variant / default; x100 cell = section 1's x100 phases "
          f"with the ratios applied)\n")
    print("| variant | changes the method? | grid (s) | ratio | retrain (s) | ratio | "
          "x100 cell (s, est.) | cell ratio |")
    print("|---|---|---|---|---|---|---|---|")
    d_g, d_r = s.grid["default"], s.retrain["default"]
    ratios = {}
    for k in s.grid:
        rg = s.grid[k] / d_g
        rr = s.retrain[k] / d_r if k in s.retrain else 1.0
        rv = 1.0
        if k in ("grid6", "grid3"):
            rv = int(k[4:]) / n_grid  # score_networks loops over the networks
        cell = _projected(x100, rg, rr, rv)
        ratios[k] = (rg, rr, rv, cell / cell_100)
        re_s = f"{s.retrain[k]:.3f} | {rr:.2f}" if k in s.retrain else "- | 1 (unchanged)"
        print(f"| {s.notes[k][0]} | {s.notes[k][1]} | {s.grid[k]:.3f} | {rg:.2f} | {re_s} | "
              f"{cell:.0f} | {cell / cell_100:.2f} |")
    cell_v = _projected(x100, r_v=small.ratio)
    print(f"| validation scoring with T / 10 = {small.num_samples} (test keeps T) | YES: noisier "
          f"validation LL (selected pair here: {'same' if small.same_pick else 'DIFFERENT'}) | "
          f"val {small.seconds:.3f} | {small.ratio:.3f} | - | - | {cell_v:.0f} | "
          f"{cell_v / cell_100:.2f} |")
    for k, G in groups.items():
        rg, rr, _, _ = ratios[k]
        comb = _projected(x100, rg, rr, small.ratio)
        print(f"| grouped {G} splits + validation T / 10 (product of the measured ratios, not "
              f"timed together) | selection noise only | | {rg:.2f} | | {rr:.2f} | "
              f"{comb:.0f} | {comb / cell_100:.2f} |")
    if same_nets is not None:
        print(f"\nGrouped splits: the first split's {n_grid} networks after {ve} epochs are "
              f"{'bit-identical' if same_nets else 'NOT bit-identical'} to train_grid's alone "
              f"(weights and biases, torch.equal).")
    print(f"\nThe grid-point rows scale the validation scoring by k/{n_grid} (score_networks "
          f"loops over the networks) and keep the retraining. The validation row's ratio is "
          f"against section 1's validation scoring (T = {a.num_samples}), not interleaved.")


def report_speedups(name: str, a: argparse.Namespace, protocol: MCDropoutUCISettings,
                    phases: Phases) -> None:
    """Section 3: time the candidate speed-ups side by side and print their table."""
    variants = build_variants(name, a, protocol, phases)
    speedups = time_variants(variants, a.repeats)
    same_nets = grouped_nets_identical(variants, a, protocol, phases)
    add_thread_variant(speedups, a, protocol, phases)
    add_compile_variant(speedups, a, protocol, phases)
    small = validation_small_t(a, protocol, phases)
    print_speedup_table(a, phases, variants.groups, speedups, small, same_nets)

# ----------------------------------------------------------------------------------------------
# the script
# ----------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    """The command line, with ``--quick``'s tiny settings applied."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=None,
                    help="the data set of sections 1-3 (default kin8nm; with --quick "
                         "bostonHousing)")
    ap.add_argument("--split", type=int, default=0)
    ap.add_argument("--epochs-multiplier", type=float, default=1.0,
                    help="multiplier m of the timed cell (also timed at 2m); default 1")
    ap.add_argument("--num-samples", type=int, default=10_000,
                    help="T of the validation and test scoring in section 1 (default 10,000)")
    ap.add_argument("--top", type=int, default=15, help="rows of the profiler tables")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1, as each protocol worker process)")
    ap.add_argument("--variant-epochs", type=int, default=10,
                    help="epochs of the shortened trainings of sections 2 and 3")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats per variant")
    ap.add_argument("--profile-epochs", type=int, default=40,
                    help="epochs of the profiled grid training (section 2)")
    ap.add_argument("--group-splits", default="4,10",
                    help="comma-separated numbers of splits whose networks share one "
                         "train_batched call (variant; clipped to the data set's splits)")
    ap.add_argument("--no-thread-variant", dest="thread_variant", action="store_false",
                    help="skip timing 2 torch threads (slow on a busy machine)")
    ap.add_argument("--probe-epochs", type=int, default=4,
                    help="epochs of the nine-set probes (0: skip the nine-set extrapolation)")
    ap.add_argument("--probe-samples", type=int, default=500, help="T of the nine-set probes")
    ap.add_argument("--try-compile", action="store_true",
                    help="also time torch.compile(train_batched) (about a minute to compile)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny smoke run (seconds): bostonHousing unless --dataset is given, "
                         "x0.025 epochs, T = 20, 1-epoch trainings, 1 repeat, 2 grouped splits, "
                         "nine-set probes of 1 epoch and T = 2, no thread variant")
    a = ap.parse_args(argv)
    if a.quick:
        a.epochs_multiplier, a.num_samples, a.top, a.variant_epochs = 0.025, 20, 5, 1
        a.repeats, a.group_splits, a.probe_epochs, a.probe_samples = 1, "2", 1, 2
        a.profile_epochs, a.thread_variant = 1, False
    if a.dataset is None:
        a.dataset = "bostonHousing" if a.quick else "kin8nm"
    return a


def print_header(name: str, protocol: MCDropoutUCISettings, split: int) -> None:
    """The report's title and the settings of the machine and of the protocol."""
    print(f"# Profile of one MC dropout UCI cell: {name}, split {split}\n")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
          f"dtype {protocol.dtype} (the protocol's default), batch {protocol.batch_size}, "
          f"os.cpu_count() {os.cpu_count()}, load average at start "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")


def print_footer(wall0: float) -> None:
    """The load average at the end and the wall time of the whole run."""
    print(f"\nload average at end {', '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"total run {time.perf_counter() - wall0:.0f} s")


def main(argv=None):
    """Measure one cell and print the report's three sections."""
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    name = resolve_uci_name(a.dataset)
    protocol = MCDropoutUCISettings(epochs_multiplier=a.epochs_multiplier, num_samples=a.num_samples)
    wall0 = time.perf_counter()
    print_header(name, protocol, a.split)
    phases = report_phases(name, a, protocol)
    report_nine_sets(name, a, protocol, phases.cell_100)
    report_training_profile(a, protocol, phases)
    report_speedups(name, a, protocol, phases)
    print_footer(wall0)


if __name__ == "__main__":
    main()
