"""The files a user hands to ``python -m vi_dropout verify``: ``--model FILE.py:FACTORY`` and
``--data FILE.npz``.

``--model`` IMPORTS AND RUNS ``FILE.py``: its top-level code executes (as with
``python FILE.py``, its folder is put first on ``sys.path`` meanwhile), then ``FACTORY()`` is
called. Only pass files you trust.

``--data`` is an ``.npz`` archive written by ``numpy.savez`` (read with ``allow_pickle=False``):
``x`` and ``y`` for a one-input ``forward(self, x)``, or one array per parameter of the forward
plus ``y`` (``image``, ``features`` and ``y`` for ``forward(self, image, features)``).

Every failure is a ``ValueError`` naming the option, the file, what was expected and what
arrived, which the command line prints as one line with exit code 2.

Example:
    >>> net = load_model_factory("examples/sequential_mlp.py:make")  # doctest: +SKIP
    >>> x, y = load_data_file("data.npz", "gaussian", module=net)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import inspect
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vi_dropout.inputs import Inputs

__all__ = ["load_model_factory", "load_data_file", "check_data_file", "forward_inputs",
           "DATA_EXPECTED"]

DTYPE = torch.float64
#: what ``--data`` must be, for messages
DATA_EXPECTED = "an .npz archive written by numpy.savez with arrays x and y"
#: integers up to this size convert to float64 exactly
_EXACT_INT = 2**53
_LIKELIHOODS = ("gaussian", "categorical")


# --- --model -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _sigint_watch() -> Iterator[list]:
    """Yield a list that receives an entry when a real SIGINT (Ctrl-C) arrives in the block.

    A ``KeyboardInterrupt`` the user's code raises itself can so be told from Ctrl-C. The SIGINT
    behaviour is otherwise unchanged; outside the main thread nothing is watched.
    """
    seen: list = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # SIG_IGN / SIG_DFL / None: nothing raises KeyboardInterrupt
        yield seen
        return

    def handler(signum, frame):
        seen.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _user_line(exc: BaseException, file: Path) -> str:
    """`` (line N)``: the last line of ``file`` in the traceback of ``exc``, or ``""``."""
    line = None
    tb = exc.__traceback__
    target = str(file.resolve())
    while tb is not None:
        if str(Path(tb.tb_frame.f_code.co_filename).resolve()) == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line is not None else ""


def _run_user_code(fn: Callable[[], object], what: str, file: Path, hint: str):
    """Return ``fn()`` (the user's code), turning whatever it raises into a ``ValueError``.

    ``SystemExit`` and a ``KeyboardInterrupt`` the code raises itself included, the message
    starts with ``what`` (``--model: importing 'f.py'``) and names the line of ``file``. A real
    Ctrl-C stays a ``KeyboardInterrupt``.
    """
    with _sigint_watch() as seen:
        try:
            return fn()
        except SystemExit as exc:
            code = "" if exc.code is None else repr(exc.code)
            raise ValueError(f"{what} called sys.exit({code}){_user_line(exc, file)}: "
                             f"{hint}") from None
        except KeyboardInterrupt as exc:
            if seen:
                raise
            raise ValueError(f"{what} raised KeyboardInterrupt{_user_line(exc, file)}: "
                             f"{hint}") from None
        except BaseException as exc:  # noqa: BLE001 - the user's code: report it in one line
            message = f": {exc}" if str(exc) else ""
            raise ValueError(f"{what} failed{_user_line(exc, file)}: {type(exc).__name__}"
                             f"{message}") from None


@contextlib.contextmanager
def _folder_on_path(folder: Path) -> Iterator[None]:
    """Put ``folder`` first on ``sys.path`` inside the block, as ``python FILE.py`` does.

    The user's file can so import its neighbours.
    """
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def load_model_factory(spec: str) -> nn.Module:
    """The module ``FACTORY()`` returns, for ``spec`` = ``FILE.py:FACTORY`` (``--model``).

    WARNING: this IMPORTS AND RUNS ``FILE.py`` (its top-level code executes, with its folder
    first on ``sys.path``, as with ``python FILE.py``) and calls ``FACTORY()``. Only pass files
    you trust. Printing at import is fine; exiting (``sys.exit``) is an error.

    Args:
        spec: ``FILE.py:FACTORY``; ``FACTORY`` is any callable of the file taking no argument
            (a function, or an ``nn.Module`` subclass) that returns a ``torch.nn.Module``.

    Returns:
        The module ``FACTORY()`` returned.

    Raises:
        ValueError: naming ``--model``, the file and what went wrong: a malformed ``spec``, a
            missing file, an import or a factory that raises (with the exception and the line of
            the file) or exits (``sys.exit``, ``SystemExit``, ``KeyboardInterrupt`` raised by
            the code), no such factory, a result that is not an ``nn.Module``. A real Ctrl-C
            stays a ``KeyboardInterrupt``.

    Example:
        >>> net = load_model_factory("examples/sequential_mlp.py:make")  # doctest: +SKIP
    """
    import importlib.util

    path, sep, name = str(spec).rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise ValueError(f"--model must be FILE.py:FACTORY (FACTORY a name defined in the file), "
                         f"got {spec!r}")
    file = Path(path)
    if not file.exists():
        raise ValueError(f"--model: file {path!r} does not exist")
    if not file.is_file():
        raise ValueError(f"--model: {path!r} is not a file (expected FILE.py:FACTORY)")
    module_name = f"_vi_dropout_user_{file.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"--model: {path!r} is not a Python file (expected FILE.py:FACTORY)")
    user = importlib.util.module_from_spec(module_spec)
    exit_hint = (f"a --model file must define {name}() and not exit (put a script's own code "
                 f"under `if __name__ == '__main__':`)")
    with _folder_on_path(file.resolve().parent):
        sys.modules[module_name] = user  # dataclasses, pickling, ... look their module up there
        try:
            _run_user_code(lambda: module_spec.loader.exec_module(user),
                           f"--model: importing {path!r}", file, exit_hint)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        factory = getattr(user, name, None)
        if not callable(factory):
            defined = sorted(k for k, v in vars(user).items()
                             if callable(v) and not k.startswith("_")
                             and getattr(v, "__module__", None) == module_name)
            raise ValueError(f"--model: {path!r} has no callable {name!r} (it defines "
                             f"{defined})")
        net = _run_user_code(factory, f"--model: {name}() of {path!r}", file,
                             f"{name}() must return the torch.nn.Module, not exit")
    if not isinstance(net, nn.Module):
        raise ValueError(f"--model: {name}() of {path!r} must return a torch.nn.Module, got "
                         f"{type(net).__name__}")
    return net


# --- --data --------------------------------------------------------------------------------------
def _join(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def check_data_file(path: str) -> Path:
    """Check from its first bytes that ``path`` (``--data``) is a zip archive, as in ``.npz``.

    Cheap (nothing is decompressed): the command line runs it before the ``--model`` file.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: naming ``--data``, the file, :data:`DATA_EXPECTED` and what it is instead
            (missing, a folder, empty, a ``.npy`` file, a pickle, another kind of file).
    """
    file = Path(path)
    if not file.exists():
        raise ValueError(f"--data: file {str(path)!r} does not exist (expected {DATA_EXPECTED})")
    if file.is_dir():
        raise ValueError(f"--data: {str(path)!r} is a folder; expected {DATA_EXPECTED}")
    try:
        with open(file, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ValueError(f"--data: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    got = None
    if not head:
        got = "an empty file"
    elif head.startswith(b"\x93NUMPY"):
        got = ("a .npy file (one array, numpy.save): save x and y together with "
               "numpy.savez(path, x=x, y=y)")
    elif head[:1] == b"\x80":
        got = "a pickle file (not loaded: pickles run code)"
    elif not head.startswith(b"PK"):
        got = f"a file that is not a zip archive (it starts with {head!r})"
    if got:
        raise ValueError(f"--data: {str(path)!r} is not {DATA_EXPECTED}: got {got}")
    return file


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``, with ``allow_pickle=False``."""
    file = check_data_file(path)
    where = f"--data: {str(path)!r}"
    try:
        archive = np.load(file, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError, ...
        raise ValueError(f"{where} is not {DATA_EXPECTED}: got a damaged or truncated zip "
                         f"archive ({type(exc).__name__}: {exc})") from None
    if isinstance(archive, np.ndarray):  # pragma: no cover - ruled out by check_data_file
        raise ValueError(f"{where} is not {DATA_EXPECTED}: got one array")
    arrays: dict[str, np.ndarray] = {}
    with archive:
        for name in archive.files:
            try:
                value = archive[name]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise ValueError(f"{where}: array {name!r} cannot be read (the archive is "
                                     f"damaged or truncated: {exc})") from None
                raise ValueError(f"{where}: array {name!r} holds Python objects (a pickled "
                                 f"object array, not loaded: allow_pickle=False); expected "
                                 f"{DATA_EXPECTED} holding numbers") from None
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"{where}: array {name!r} cannot be read (the archive is "
                                 f"damaged or truncated: {type(exc).__name__}: {exc})") from None
            if not isinstance(value, np.ndarray):
                raise ValueError(f"{where}: member {name!r} is not a numpy array; expected "
                                 f"{DATA_EXPECTED}")
            arrays[name] = value
    return arrays


def forward_inputs(module: nn.Module | None) -> tuple[list[inspect.Parameter],
                                                      list[inspect.Parameter]]:
    """The required and the optional named parameters of ``module.forward``.

    ``*args`` and ``**kwargs`` are left out; without a module, a readable signature or named
    parameters: one required parameter ``x``.

    Returns:
        ``(required, optional)``, lists of ``inspect.Parameter`` in the forward's order.
    """
    x = [inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if module is None:
        return x, []
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return x, []
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = [p for p in named if p.default is p.empty]
    optional = [p for p in named if p.default is not p.empty]
    if not required and not optional:
        return x, []
    return required, optional


def _kind_problem(arr: np.ndarray) -> str | None:
    """Why ``arr``'s dtype is not numbers, or ``None``."""
    kind = arr.dtype.kind
    if kind == "c":
        return (f"complex numbers (dtype {arr.dtype}; the imaginary part would be lost): save "
                f"real arrays, e.g. the real and imaginary parts as separate columns")
    if kind in "US":
        return f"text (dtype {arr.dtype}), not numbers"
    if kind == "O":
        return "Python objects (dtype object), not numbers"
    if kind in "mM":
        return f"dates or times (dtype {arr.dtype}), not numbers"
    if kind == "V":
        return f"records (dtype {arr.dtype}), not an array of numbers"
    return None


def _first(mask: np.ndarray, arr: np.ndarray) -> str:
    """``e.g. <value> at row <i>`` for the first True entry of ``mask``."""
    index = np.argwhere(mask)[0]
    value = arr[tuple(index)]
    value = repr(float(value)) if arr.dtype.kind == "f" else repr(value.item())
    return f"e.g. {value} at row {int(index[0])}"


def _as_float64(arr: np.ndarray, label: str) -> np.ndarray:
    """``arr`` (bool, integers or floats) as float64, refusing what would not convert exactly.

    Integers beyond 2**53 and values that are (or become) NaN or inf are refused.
    """
    if arr.dtype.kind in "iu":
        big = (arr > _EXACT_INT) | (arr < -_EXACT_INT)
        if big.any():
            raise ValueError(f"{label} holds integers beyond 2**53, which float64 cannot hold "
                             f"exactly ({_first(big, arr)})")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        raise ValueError(f"{label} must be finite, got {int(bad.sum())} NaN or inf entries "
                         f"({_first(bad, out)})")
    return out


def _input_tensor(arr: np.ndarray, label: str, integer_ids: bool = False) -> torch.Tensor:
    """One input array as a tensor, batch first: floats as float64, booleans (masks) as bool,
    integers as int64 token ids when ``integer_ids`` (the network has an ``nn.Embedding``) and
    as float64 otherwise (e.g. ``uint8`` pixels)."""
    if arr.dtype.kind == "b":
        if arr.ndim == 0:
            raise ValueError(f"{label} must have one row per example (batch first), got a scalar")
        return torch.from_numpy(np.ascontiguousarray(arr))
    problem = _kind_problem(arr)
    if problem:
        raise ValueError(f"{label} must hold real numbers, got {problem}")
    if arr.ndim == 0:
        raise ValueError(f"{label} must have one row per example (batch first), got a scalar")
    if integer_ids and arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and (arr > np.iinfo(np.int64).max).any():
            raise ValueError(f"{label} holds integers beyond the int64 range")
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))
    return torch.from_numpy(_as_float64(arr, label))


def _targets(arr: np.ndarray, label: str, likelihood: str) -> torch.Tensor:
    """``y`` as ``N x D`` float64 (Gaussian) or ``N`` int64 class indices (categorical)."""
    problem = _kind_problem(arr)
    if problem:
        raise ValueError(f"{label} must hold real numbers, got {problem}")
    if likelihood == "gaussian":
        if arr.dtype.kind == "b":
            raise ValueError(f"{label} holds booleans (dtype bool): for class labels pass "
                             f"--likelihood categorical and save integers, for 0/1 regression "
                             f"targets save floats")
        if arr.ndim < 2:
            raise ValueError(
                f"{label} must have shape N x D (N x 1 for one output) for a Gaussian "
                f"likelihood, got shape {arr.shape}: save it as y.reshape(-1, 1) (or pass "
                f"--likelihood categorical for class labels)")
        return torch.from_numpy(_as_float64(arr, label))
    if arr.dtype.kind == "b":
        raise ValueError(f"{label} holds booleans (dtype bool); expected integer class labels "
                         f"0..C-1: save y.astype(numpy.int64)")
    if arr.ndim != 1:
        hint = ("y[:, 0]" if arr.ndim == 2 and arr.shape[1] == 1
                else "y.argmax(1) if y is one-hot" if arr.ndim == 2 else "one label per example")
        raise ValueError(f"{label} must hold N class labels (shape (N,)) for a categorical "
                         f"likelihood, got shape {arr.shape}: save {hint}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(f"{label} must be finite, got {int(bad.sum())} NaN or inf entries "
                             f"({_first(bad, arr)})")
        bad = arr != np.round(arr)
        if bad.any():
            raise ValueError(f"{label} must hold integer class labels 0..C-1, got non-integer "
                             f"values ({_first(bad, arr)}); they are not rounded")
    bad = arr < 0
    if bad.any():
        raise ValueError(f"{label} must hold class labels 0..C-1, got negative values "
                         f"({_first(bad, arr)})")
    bad = arr > (_EXACT_INT if arr.dtype.kind == "f" else np.iinfo(np.int64).max)
    if bad.any():
        raise ValueError(f"{label} holds class labels too large to be indices "
                         f"({_first(bad, arr)})")
    return torch.from_numpy(arr.astype(np.int64))


def load_data_file(path: str, likelihood: str, module: nn.Module | None = None
                   ) -> tuple[Inputs, torch.Tensor]:
    """The inputs and targets of the ``.npz`` file ``path`` (``--data``), checked.

    The arrays are named after the parameters of ``module.forward`` (read with
    :func:`inspect.signature`): one input (or none given): ``x`` (or the parameter's own name,
    e.g. ``input`` for ``nn.Sequential``); several: one array per required parameter (and per
    optional parameter to pass), e.g. ``image`` and ``features`` for
    ``forward(self, image, features)``. Plus ``y``: ``N x D`` targets for a Gaussian likelihood
    (a 1-D ``y`` is refused, never reshaped), ``N`` integer class labels for a categorical one.
    Every array has one row per example. Nothing is truncated, rounded or reshaped.

    Args:
        path: the ``.npz`` file (read with ``allow_pickle=False``).
        likelihood: ``"gaussian"`` or ``"categorical"``.
        module: the network, to read the names of its inputs; ``None``: one input ``x``.

    Returns:
        ``(x, y)``: ``x`` a float64 tensor (one input) or a dict ``{name: float64 tensor}``
        (integer arrays stay int64 when the network has an ``nn.Embedding``, boolean ones bool)
        (several; a tuple in the forward's order if some are positional-only), ``y`` float64
        ``N x D`` or int64 ``N``.

    Raises:
        ValueError: naming ``--data``, the file or array, what was expected and what arrived:
            not an ``.npz`` (a ``.npy``, a truncated or non-zip file, a pickled object array),
            missing or unused arrays, text, objects, complex or non-finite values, bool or
            non-integer or negative class labels, a 1-D Gaussian ``y``, differing row counts.

    Example:
        >>> x, y = load_data_file("data.npz", "categorical")  # doctest: +SKIP
    """
    if likelihood not in _LIKELIHOODS:
        raise ValueError(f"likelihood must be 'gaussian' or 'categorical', got {likelihood!r}")
    required, optional = forward_inputs(module)
    if any(p.name == "y" for p in required):
        raise ValueError("--data: the forward of --model has a parameter named 'y', which "
                         "clashes with the targets y of the .npz; rename the parameter")
    optional = [p for p in optional if p.name != "y"]
    arrays = _read_arrays(path)
    where = f"--data: {str(path)!r}"
    held = sorted(arrays)
    given = [k for k in arrays if k != "y"]
    first = (required + optional)[0]
    single = (len(required) <= 1 and first.kind != first.KEYWORD_ONLY
              and not any(p.name in arrays for p in optional if p is not first))
    if single:
        own = first.name
        chosen = [k for k in dict.fromkeys(("x", own)) if k in arrays]
        alias = f" (or {own!r}, the forward's parameter)" if own != "x" else ""
        if len(chosen) == 2:
            raise ValueError(f"{where} holds both 'x' and {own!r}: the network takes one input; "
                             f"keep one of them")
        used = chosen
        missing = [] if chosen else ["x"]
        expected = f"arrays x{alias} and y"
    else:
        used = [p.name for p in required] + [p.name for p in optional if p.name in arrays]
        missing = [p.name for p in required if p.name not in arrays]
        expected = (f"arrays {_join([p.name for p in required] + ['y'])}, named after the "
                    f"parameters of the forward")
    missing += [] if "y" in arrays else ["y"]
    if missing:
        hint = ""
        if not single and "x" in arrays:
            hint = "; a forward with several inputs takes one array per parameter, named after it"
        elif any(k.startswith("arr_") for k in held):
            hint = "; name the arrays: numpy.savez(path, x=x, y=y)"
        raise ValueError(f"{where} has no array(s) {missing} (it holds {held}); expected "
                         f"{expected}{hint}")
    unused = [k for k in given if k not in used]
    if unused:
        takes = _join([p.name for p in required + optional]) if not single else "one input"
        raise ValueError(f"{where} holds arrays the network does not take: {unused} (its "
                         f"forward takes {takes}); expected {expected}")
    y = _targets(arrays["y"], f"{where}: array 'y'", likelihood)
    if y.dim() == 0 or y.shape[0] == 0:
        raise ValueError(f"{where}: array 'y' holds no examples (shape {tuple(y.shape)})")
    integer_ids = module is not None and any(
        isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in module.modules())
    inputs = {name: _input_tensor(arrays[name], f"{where}: array {name!r}", integer_ids)
              for name in used}
    for name, value in inputs.items():
        if value.shape[0] != y.shape[0]:
            raise ValueError(f"{where}: array {name!r} has {value.shape[0]} rows but y has "
                             f"{y.shape[0]}; every array holds one row per example")
    if single:
        return inputs[used[0]], y
    if any(p.kind == p.POSITIONAL_ONLY and p.name in used for p in required + optional):
        # passed positionally, in the forward's order (required ones come first there)
        order = [p.name for p in required + optional if p.kind != p.KEYWORD_ONLY]
        if set(order[:len(used)]) != set(used):
            raise ValueError(f"{where}: arrays {used} cannot be passed to a forward with "
                             f"positional-only parameters {order}: save the first "
                             f"{len(used)} of them")
        return tuple(inputs[name] for name in order[:len(used)]), y
    return inputs, y
