r"""The registry of the UCI comparison's methods: one entry per method, read by ``uci``,
``reference-scores`` and the reports.

A method is a :class:`UCIMethod`: its id, label and colour (the one colour and id of
:mod:`comparisons.report.styles`), how its cells are made from the data sets and splits of a run,
how a cell (or a group of cells trained together) is run into tidy records, its grouping key,
the optional dependency it needs, and its Gaussian test predictive on one split (what
``reference-scores`` compares with the HMC reference). Every built-in method is registered by its
own protocol module (:data:`BUILTIN_MODULES`, imported on first use); a method written outside
the package is one Python file that calls :func:`register_method`, most simply through
:func:`split_method`:

.. code-block:: python

    # my_method.py
    from comparisons.protocols.registry import register_method, split_method

    def fit_predict(x_train, y_train, x_test, settings):
        ...  # standardised inputs and targets, N x D and N x 1 float64 arrays
        return mean, var  # the predictive of y_test on the standardised scale, noise included

    register_method(split_method("my_method", fit_predict, label="my method", color="tab:gray"))

and ``python -m comparisons uci --method-file my_method.py --methods mc_dropout,my_method ...``
runs it on the standard splits next to the built-in methods (``examples/swag_method.py`` is a
complete one). The shared :class:`RunSettings` are what every protocol reads (epochs multiplier,
samples, seed, dtype), validated once.

Example:
    >>> sorted(method_ids())[:3]
    ['concrete_dropout', 'deep_ensemble', 'full_elbo']
    >>> get_method("mc_dropout").label
    'MC dropout'
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from comparisons.protocols.settings import ProtocolSettings
from comparisons.report.styles import register_style
from comparisons.runner.executors import Cell

__all__ = [
    "BUILTIN_MODULES",
    "RunSettings",
    "builtin_method",
    "builtin_method_ids",
    "UCIMethod",
    "get_method",
    "load_method_file",
    "method_ids",
    "predictive_method_ids",
    "register_method",
    "run_settings_of",
    "split_method",
]

#: the protocol modules that register the built-in methods, in the order ``--help`` lists them
BUILTIN_MODULES = (
    "comparisons.protocols.uci",
    "comparisons.protocols.uci_gp",
    "comparisons.protocols.uci_concrete",
    "comparisons.protocols.uci_mfvi",
    "comparisons.protocols.uci_deep_ensemble",
    "comparisons.protocols.uci_laplace",
)

_REGISTRY: dict[str, UCIMethod] = {}
#: built-in method id -> the protocol module that registered it (for a stable order)
_BUILTIN_MODULE_OF: dict[str, str] = {}
_BUILTINS_LOADED = False


@dataclass(frozen=True)
class RunSettings(ProtocolSettings):
    """What every method of a UCI run reads, validated once (the ``uci`` command line's values).

    Args:
        epochs_multiplier: the protocol's base epochs (40; 20 for protein) times this.
        num_samples: MC samples at test time.
        seed: base seed of the run.
        max_grid: only the first grid points of the MC dropout grid search (smoke runs).
        gp_max_fit_size: GPs fit their hyper-parameters on at most this many rows.
        group_splits: MC dropout's pending splits per batched fit.
        temperature: the Concrete temperature (concrete_dropout, full_elbo).
        ensemble_size, ensemble_epochs, ensemble_lrs, adversarial_epsilon: deep ensembles.
        dtype: ``"float64"`` or ``"float32"`` for a method that lets the run choose
            (:func:`split_method` hands its data over in this dtype).
        prior_length_scale: the prior length-scale :math:`l` a method with a prior uses in
            place of its protocol's default (``reference-scores`` sets the reference's);
            ``None``: the protocol's own.

    Raises:
        ValueError: a value out of range, naming the field.
    """

    epochs_multiplier: float = 10.0
    num_samples: int = 10_000
    seed: int = 0
    max_grid: int | None = None
    gp_max_fit_size: int = 3000
    group_splits: int = 1
    temperature: float = 0.1
    ensemble_size: int = 5
    ensemble_epochs: int = 40
    ensemble_lrs: tuple[float, ...] = (0.1, 0.01, 0.001)
    adversarial_epsilon: float | None = None
    dtype: str = "float64"
    prior_length_scale: float | None = None

    optional_fields = ("prior_length_scale",)

    def __post_init__(self):
        from vi_dropout.validation import check_positive, check_positive_int

        super().__post_init__()
        for name in ("gp_max_fit_size", "group_splits", "ensemble_size", "ensemble_epochs"):
            check_positive_int(getattr(self, name), name)
        if self.max_grid is not None:
            check_positive_int(self.max_grid, "max_grid")
        check_positive(self.temperature, "temperature")
        if self.adversarial_epsilon is not None:
            check_positive(self.adversarial_epsilon, "adversarial_epsilon")
        object.__setattr__(self, "ensemble_lrs", tuple(
            check_positive(v, "ensemble_lrs") for v in self.ensemble_lrs))


#: ``make_cells(datasets, splits, settings) -> cells``
MakeCells = Callable[[Sequence[str], str, RunSettings], list[Cell]]
#: ``run_cell(cell or group) -> records`` (the cell function of
#: :func:`~comparisons.runner.executors.run_cells`)
RunCell = Callable[[Any], list[dict]]


@dataclass(frozen=True)
class UCIMethod:
    """One method of the UCI comparison (see the module docstring).

    Args:
        id: the method id of its records (``[a-z0-9_]``, e.g. ``"mc_dropout"``); the records
            it writes may carry other method ids too (``gp`` writes ``gp_arccos1`` and
            ``gp_se``), listed in ``record_methods``.
        label: the label in tables and figures.
        color: its matplotlib colour.
        make_cells: ``(datasets, splits, settings) -> [Cell]``, the cells of a run (their
            ``config`` holds every setting that changes the numbers: it is hashed into the id).
        run_cell: ``cell or CellGroup -> records`` (tidy: dataset, method, split, metric, value).
        help: one line for ``--help``.
        group_key: ``(cell, settings) -> key or None``: pending cells with the same key run as
            one :class:`~comparisons.runner.executors.CellGroup`; ``None`` runs cells alone.
        requires: ``() -> None or why it cannot run here`` (an optional extra), checked when
            the method is asked for.
        split_predictive: ``(raw split, settings) -> (mean, var)``: its Gaussian predictive of
            the split's test targets on the ORIGINAL scale, noise included (what
            ``reference-scores`` compares with HMC); ``None`` when it has none.
        record_methods: the method ids of its records (default ``(id,)``).
    """

    id: str
    label: str
    color: str
    make_cells: MakeCells
    run_cell: RunCell
    help: str = ""
    group_key: Callable[[Cell, RunSettings], Hashable | None] | None = None
    requires: Callable[[], str | None] | None = None
    split_predictive: Callable[[Any, RunSettings], tuple[np.ndarray, np.ndarray]] | None = None
    record_methods: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id or not all(
                c.islower() or c.isdigit() or c == "_" for c in self.id):
            raise ValueError(f"id must be a non-empty string of lower-case letters, digits and "
                             f"'_', got {self.id!r}")
        for name in ("make_cells", "run_cell"):
            if not callable(getattr(self, name)):
                raise ValueError(f"{name} of method {self.id!r} must be callable, got "
                                 f"{type(getattr(self, name)).__name__}")
        if not self.record_methods:
            object.__setattr__(self, "record_methods", (self.id,))

    def unavailable(self) -> str | None:
        """Why the method cannot run on this machine (a missing extra), or ``None``."""
        return None if self.requires is None else self.requires()


def register_method(method: UCIMethod, *, replace: bool = False) -> UCIMethod:
    """Add ``method`` to the registry (and its label and colour to the report styles).

    Args:
        method: the :class:`UCIMethod`.
        replace: replace a method of the same id (default: refuse).

    Returns:
        ``method`` (so a module can write ``METHOD = register_method(UCIMethod(...))``).

    Raises:
        ValueError: not a :class:`UCIMethod`, or its id is taken and ``replace`` is False.
    """
    if not isinstance(method, UCIMethod):
        raise ValueError(f"method must be a UCIMethod, got {type(method).__name__}")
    old = _REGISTRY.get(method.id)
    if old is not None and old is not method and not replace:
        raise ValueError(f"a method {method.id!r} is already registered ({old.label}); choose "
                         "another id or pass replace=True")
    if method.id in method.record_methods:  # (gp's records are gp_arccos1 and gp_se, styled)
        register_style(method.id, method.label, method.color, replace=replace)
    _REGISTRY[method.id] = method
    return method


def builtin_method(method_id: str, make_cells: MakeCells, run_cell: RunCell, *,
                   label: str | None = None, color: str | None = None, **kwargs) -> UCIMethod:
    """Register a built-in method, its label and colour taken from
    :data:`comparisons.report.styles.METHOD_STYLES` (the one place they are written) unless
    given; ``kwargs`` are the other :class:`UCIMethod` fields."""
    from comparisons.report.styles import METHOD_STYLES

    style = METHOD_STYLES.get(method_id)
    module = getattr(make_cells, "__module__", None) or type(make_cells).__module__
    _BUILTIN_MODULE_OF[method_id] = module
    return register_method(UCIMethod(
        id=method_id, label=label or style.label, color=color or style.color,
        make_cells=make_cells, run_cell=run_cell, **kwargs))


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def method_ids() -> tuple[str, ...]:
    """The registered method ids: the built-in ones in :data:`BUILTIN_MODULES` order (whatever
    order the modules were imported in), then those registered later (by method files)."""
    _load_builtins()
    order = {module: k for k, module in enumerate(BUILTIN_MODULES)}
    position = {method_id: k for k, method_id in enumerate(_REGISTRY)}
    return tuple(sorted(_REGISTRY, key=lambda m: (
        order.get(_BUILTIN_MODULE_OF.get(m), len(order)), position[m])))


def predictive_method_ids(exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """The registered methods with a ``split_predictive`` (what ``reference-scores`` and
    ``diagnose`` can score), in :func:`method_ids` order, without ``exclude``."""
    return tuple(m for m in method_ids() if m not in exclude
                 and get_method(m).split_predictive is not None)


def builtin_method_ids() -> tuple[str, ...]:
    """The ids of the built-in methods (those of :data:`BUILTIN_MODULES`), in their order."""
    return tuple(m for m in method_ids() if m in _BUILTIN_MODULE_OF)


def get_method(method_id: str) -> UCIMethod:
    """The registered method ``method_id``.

    Raises:
        ValueError: no method of that id (the registered ones are named).
    """
    _load_builtins()
    try:
        return _REGISTRY[method_id]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {method_id!r}; registered: {', '.join(_REGISTRY)} "
                         "(a method of your own: --method-file FILE.py that calls "
                         "register_method)") from None


def load_method_file(path: str | Path) -> list[str]:
    """Import the Python file ``path``, which registers methods with :func:`register_method`,
    and return the ids it added. The file is imported (and so run) as a module named after it;
    loading the same file again is a no-op.

    Raises:
        ValueError: the file is missing, is not a ``.py`` file, fails to import (its error
            named), or registers no method.
    """
    _load_builtins()
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        raise ValueError(f"method file {path}: expected an existing .py file that calls "
                         "register_method")
    # one module name per file, the same in every process (str hashes are salted per process)
    name = "comparisons_method_file_" + hashlib.sha256(
        str(path.resolve()).encode("utf-8")).hexdigest()[:16]
    if name in sys.modules:
        return list(getattr(sys.modules[name], "__registered_ids__", []))
    before = dict(_REGISTRY)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        del sys.modules[name]
        raise ValueError(f"method file {path} called sys.exit({exc.code!r}) when imported") \
            from None
    except Exception as exc:  # noqa: BLE001 - the user's file: its error, named in one line
        del sys.modules[name]
        raise ValueError(f"method file {path} failed when imported: {type(exc).__name__}: "
                         f"{exc}") from None
    added = [m for m, method in _REGISTRY.items() if before.get(m) is not method]
    if not added:
        del sys.modules[name]
        raise ValueError(f"method file {path} registered no method: call register_method("
                         "split_method(...)) in it")
    module.__registered_ids__ = added
    return added


# ------------------------------------------------------------------ methods of your own
def _standardized(raw, dtype: str):
    from comparisons.datasets.uci import standardize

    std = standardize(raw)
    cast = np.float64 if dtype == "float64" else np.float32
    return std, (np.asarray(std.x_train, dtype=cast), np.asarray(std.y_train, dtype=cast),
                 np.asarray(std.x_test, dtype=cast))


class _SplitRun:
    """The picklable cell function of a :func:`split_method` (found again by id in a worker
    process, which loads the method files of the run)."""

    def __init__(self, method_id: str):
        self.method_id = method_id

    def __call__(self, cell: Cell) -> list[dict]:
        from comparisons.datasets.uci import load_uci
        from comparisons.protocols.uci_gp import predictive_metrics

        method = get_method(self.method_id)
        settings = run_settings_of(cell)
        raw = load_uci(cell.dataset, cell.split)
        t0 = time.perf_counter()
        mean, var = method.split_predictive(raw, settings)
        metrics = predictive_metrics(mean, var, np.asarray(raw.y_test, np.float64)[:, 0],
                                     time.perf_counter() - t0)
        return [{"dataset": cell.dataset, "method": self.method_id, "split": int(cell.split),
                 "metric": metric, "value": value} for metric, value in metrics.items()]


class _SplitPredictive:
    """``(raw split, settings) -> (mean, var)`` on the original scale from a user's
    ``fit_predict`` on the standardised scale, checked."""

    def __init__(self, method_id: str, fit_predict):
        self.method_id, self.fit_predict = method_id, fit_predict

    def __call__(self, raw, settings: RunSettings):
        std, (x_train, y_train, x_test) = _standardized(raw, settings.dtype)
        out = self.fit_predict(x_train, y_train, x_test, settings)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(f"method {self.method_id}: fit_predict must return (mean, var), "
                             f"got {type(out).__name__}")
        n = x_test.shape[0]
        mean, var = (np.asarray(a.detach().cpu() if hasattr(a, "detach") else a,
                                dtype=np.float64).reshape(-1) for a in out)
        for name, arr in (("mean", mean), ("var", var)):
            if arr.shape != (n,):
                raise ValueError(f"method {self.method_id}: fit_predict's {name} must hold one "
                                 f"value per test row ({n}), got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"method {self.method_id}: fit_predict's {name} is not finite")
        if np.any(var <= 0):
            raise ValueError(f"method {self.method_id}: fit_predict's var must be > 0 (the "
                             "predictive variance of y, noise included)")
        return std.y_mean + std.y_std * mean, std.y_std**2 * var


class _SplitCells:
    def __init__(self, method_id: str, settings_fields: Sequence[str], code_sha256: str | None):
        self.method_id, self.settings_fields = method_id, tuple(settings_fields)
        self.code_sha256 = code_sha256

    def __call__(self, datasets, splits, settings: RunSettings) -> list[Cell]:
        from comparisons.datasets.uci import resolve_uci_name, uci_info
        from comparisons.protocols.uci import parse_splits

        config = {k: (list(v) if isinstance(v, tuple) else v)
                  for k, v in asdict(settings).items()
                  if k in self.settings_fields and v is not None}
        if self.code_sha256 is not None:  # an edited method file makes new cells
            config["code_sha256"] = self.code_sha256
        cells = []
        for name in datasets:
            name = resolve_uci_name(name)
            for split in parse_splits(splits, uci_info(name).n_splits, clip_ranges=True):
                cells.append(Cell(name, split, self.method_id, config))
        return cells


def _source_sha256(fn) -> str | None:
    """SHA-256 of the file that defines ``fn`` (``None`` when it has none, e.g. a REPL)."""
    try:
        path = inspect.getsourcefile(fn)
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else None
    except (OSError, TypeError):
        return None


def split_method(method_id: str, fit_predict: Callable, *, label: str | None = None,
                 color: str = "tab:gray", help: str = "",
                 settings_fields: Sequence[str] = ("epochs_multiplier", "num_samples", "seed",
                                                   "dtype")) -> UCIMethod:
    r"""A :class:`UCIMethod` from one function that fits on a split and predicts its test rows.

    ``fit_predict(x_train, y_train, x_test, settings) -> (mean, var)`` gets the split
    standardised as every built-in method gets it (inputs and targets to zero mean and unit
    variance on the training rows; ``N x D`` and ``N x 1`` numpy arrays in ``settings.dtype``)
    and returns the predictive mean and variance (noise included) of the test targets on that
    scale, ``(N_test,)`` arrays or tensors. The registry maps them back to the original scale and
    records what every method records (``rmse``, ``test_ll``, ``coverage_95``,
    ``mean_pred_sd``, ``wall_time_s``), one cell per (data set, split); ``reference-scores``
    compares the same predictive with the HMC reference.

    Args:
        method_id: the method id.
        fit_predict: the function above (defined at module level: worker processes import it).
        label, color: for tables and figures (default label: the id).
        help: one line for ``--help``.
        settings_fields: the :class:`RunSettings` fields that change its numbers (hashed into
            its cell ids, so other values make other cells). The SHA-256 of the file that
            defines ``fit_predict`` is hashed in too: an edited method runs again, its old
            cells stay in the folder but out of the new table.

    Example:
        >>> def mean_only(x_train, y_train, x_test, settings):
        ...     return np.zeros(len(x_test)), np.ones(len(x_test))
        >>> m = split_method("prior_mean", mean_only)
        >>> m.id, m.label
        ('prior_mean', 'prior_mean')
    """
    if not callable(fit_predict):
        raise ValueError(f"fit_predict must be callable, got {type(fit_predict).__name__}")
    bad = [f for f in settings_fields if f not in RunSettings.__dataclass_fields__]
    if bad:
        raise ValueError(f"settings_fields: {bad} are not RunSettings fields "
                         f"({', '.join(RunSettings.__dataclass_fields__)})")
    return UCIMethod(id=method_id, label=label or method_id, color=color,
                     make_cells=_SplitCells(method_id, settings_fields, _source_sha256(fit_predict)),
                     run_cell=_SplitRun(method_id), help=help,
                     split_predictive=_SplitPredictive(method_id, fit_predict))


def run_settings_of(cell: Cell) -> RunSettings:
    """The :class:`RunSettings` a cell was made with (the fields its config holds; the others
    at their defaults)."""
    return RunSettings(**{k: (tuple(v) if k == "ensemble_lrs" else v)
                          for k, v in cell.config.items()
                          if k in RunSettings.__dataclass_fields__})

