"""argparse ``type=`` helpers and options shared by the ``python -m comparisons`` subcommands.

One implementation each, so that an option means and checks the same thing in every subcommand:
an argparse error names the option, the expected range and what arrived, before any work starts.
The path checks and the error reporting are shared with ``python -m vi_dropout`` (they live in
:mod:`vi_dropout.cli`).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

from vi_dropout.cli import (
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    CLIParser,
    output_dir_arg,
    run_reporting_errors,
    writable_file_arg,
)

__all__ = [
    "CLIParser",
    "EXIT_INTERRUPTED",
    "EXIT_USER_ERROR",
    "int_at_least",
    "float_in",
    "positive_float",
    "keep_prob_arg",
    "toy_or_uci_dataset",
    "output_dir_arg",
    "writable_file_arg",
    "run_reporting_errors",
    "add_out_argument",
    "add_threads_argument",
    "add_seed_argument",
    "add_keep_prob_argument",
    "add_smoke_argument",
    "format_bytes",
    "machine_memory",
    "check_fits_in_memory",
]


def int_at_least(name: str, minimum: int = 1, meaning: str | None = None) -> Callable[[str], int]:
    """argparse type: an integer ``>= minimum``; anything else is an ``ArgumentTypeError`` naming
    the option (``name``), the bound, what the option means (``meaning``) and what arrived.

    Example:
        >>> int_at_least("--iterations")("3")
        3
    """
    what = f" ({meaning})" if meaning else ""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {minimum}{what}, "
                                             f"got {text!r}")
        return value

    return parse


def _interval(low, high, low_inclusive, high_inclusive) -> str:
    if high is None:
        return f"{'>=' if low_inclusive else '>'} {low:g}"
    if low is None:
        return f"{'<=' if high_inclusive else '<'} {high:g}"
    return (f"in {'[' if low_inclusive else '('}{low:g}, {high:g}"
            f"{']' if high_inclusive else ')'}")


def float_in(name: str, low: float | None = None, high: float | None = None, *,
             low_inclusive: bool = True, high_inclusive: bool = True,
             meaning: str | None = None) -> Callable[[str], float]:
    """argparse type: a finite number in the interval from ``low`` to ``high`` (``None``: no
    bound; ``*_inclusive`` says whether the bound itself is allowed).

    Example:
        >>> float_in("--train-fraction", 0, 1, low_inclusive=False, high_inclusive=False)("0.7")
        0.7
    """
    rule = f"a finite number {_interval(low, high, low_inclusive, high_inclusive)}"
    what = f" ({meaning})" if meaning else ""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value >= low if low_inclusive else value > low
        if ok and high is not None:
            ok = value <= high if high_inclusive else value < high
        if not ok:
            raise argparse.ArgumentTypeError(f"{name} must be {rule}{what}, got {text!r}")
        return value

    return parse


def positive_float(name: str, meaning: str | None = None) -> Callable[[str], float]:
    """argparse type: a finite number ``> 0``."""
    return float_in(name, 0, None, low_inclusive=False, meaning=meaning)


def keep_prob_arg(name: str = "--keep-prob") -> Callable[[str], float]:
    """argparse type: a keep probability in ``(0, 1]`` (the probability that a unit is KEPT).

    Example:
        >>> keep_prob_arg()("0.8")
        0.8
    """
    return float_in(name, 0, 1, low_inclusive=False,
                    meaning="the probability that a unit is KEPT; drop rate = 1 - keep_prob")


def toy_or_uci_dataset(text: str) -> str:
    """argparse type of ``--dataset`` where the toy is allowed: ``toy1d`` or a UCI data set name
    or alias (returned as typed; an unknown name lists the valid ones).

    Example:
        >>> toy_or_uci_dataset("boston")
        'boston'
    """
    from comparisons.datasets.uci import resolve_uci_name

    if text != "toy1d":
        try:
            resolve_uci_name(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"--dataset must be 'toy1d' or a UCI data set: "
                                             f"{exc}") from None
    return text


def add_out_argument(parser: argparse.ArgumentParser, *, required: bool = True,
                     default: str | None = None,
                     help: str = "output directory (created if needed)") -> None:
    """``--out DIR``, checked at parse time (not an existing file; creatable and writable)."""
    parser.add_argument("--out", type=output_dir_arg("--out"), required=required,
                        default=default, help=help)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` (integer >= 1, default 1): ``torch.set_num_threads``."""
    parser.add_argument("--threads", type=int_at_least("--threads"), default=1,
                        help="torch intra-op threads (default 1: fastest for these small models)")


def add_seed_argument(parser: argparse.ArgumentParser, default: int = 0,
                      help: str | None = None) -> None:
    """``--seed N`` (integer >= 0)."""
    parser.add_argument("--seed", type=int_at_least("--seed", 0), default=default,
                        help=help or f"random seed (integer >= 0, default {default})")


def add_keep_prob_argument(parser: argparse.ArgumentParser, default: float,
                           help: str) -> None:
    """``--keep-prob P`` in ``(0, 1]``: the probability that a unit is KEPT (every subcommand
    spells it this way; the drop rate is ``1 - keep_prob``)."""
    parser.add_argument("--keep-prob", type=keep_prob_arg(), default=default,
                        help=f"{help} (probability that a unit is KEPT, in (0, 1]; drop rate = "
                             f"1 - keep_prob; default {default:g})")


def add_smoke_argument(parser: argparse.ArgumentParser, smoke: dict) -> None:
    """``--smoke``: the tiny settings ``smoke`` (seconds; for checking the plumbing) override the
    others; its help lists them."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiny settings (seconds) overriding the others: " + ", ".join(
                            f"{k}={v}" for k, v in smoke.items()))


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, 3 significant digits.

    Example:
        >>> format_bytes(3 * 2**30), format_bytes(512), format_bytes(4.8e17)
        ('3 GiB', '512 B', '426 PiB')
    """
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    k = 0
    while n >= 1024 and k < len(units) - 1:
        n, k = n / 1024, k + 1
    return f"{n:.3g} {units[k]}"


def machine_memory(device: str = "cpu") -> tuple[int, str] | None:
    """``(bytes, where)``: the memory of ``device``: this machine's RAM for ``"cpu"`` (psutil if
    installed, else ``os.sysconf``), the GPU's for ``"cuda[:N]"``; ``None`` where unknown (e.g. no
    CUDA)."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        index = int(device.partition(":")[2] or torch.cuda.current_device())
        try:
            props = torch.cuda.get_device_properties(index)
        except (AssertionError, RuntimeError, ValueError):
            return None
        return int(props.total_memory), f"of GPU memory on {device} ({props.name})"
    try:
        import psutil

        return int(psutil.virtual_memory().total), "of RAM on this machine"
    except ImportError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "of RAM on this machine"
    except (OSError, ValueError, AttributeError):
        return None


def check_fits_in_memory(nbytes: float, what: str, fix: str, device: str = "cpu") -> None:
    """Raise ``ValueError`` (one line: the need, the memory of ``device`` and ``fix``) when
    ``nbytes`` is more than ``device`` has in all; unknown memory passes.

    Such a run could only fail (an allocator error, or the OS killing the process) once it has
    started; an estimate below the memory is no promise that the run fits.

    Example:
        >>> check_fits_in_memory(1024, "a tiny run", "use less")
    """
    memory = machine_memory(device)
    if memory is not None and nbytes > memory[0]:
        raise ValueError(f"{what} needs about {format_bytes(nbytes)} of memory, more than the "
                         f"{format_bytes(memory[0])} {memory[1]}; {fix}")
