"""The files of ``python -m vi_dropout verify --model FILE.py:FACTORY --data FILE.npz`` and the
checks of its arguments: every user's mistake is a ValueError naming the option, the file, what
was expected and what arrived in the API, and one line on stderr with exit code 2 on the command
line (argparse's errors too: one line, pointing to ``--help``)."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from vi_dropout import cli
from vi_dropout.user_files import check_data_file, load_data_file, load_model_factory
from vi_dropout.verify import network as verify_network_module
from vi_dropout.verify import problem as problem_module

MLP = '''
import torch
from torch import nn


def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
'''

TWO_INPUTS = '''
import torch
from torch import nn


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(2 * 4 * 4 + 3, 1)

    def forward(self, image, features, scale=None):
        h = torch.relu(self.conv(image)).flatten(1)
        out = self.head(self.drop(torch.cat([h, features], 1)))
        return out if scale is None else out * scale


def make():
    torch.manual_seed(0)
    return TwoInputs()
'''

FAKE_ROWS = [{"check": "gradient", "setting": "s", "value": 1.0, "tolerance": "<= 2",
              "passed": True, "detail": ""}]


def _write(folder, name, text):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def files(tmp_path):
    """A model file, a good data file for it and a marker the model file writes when it runs."""
    _write(tmp_path, "mlp.py", MLP + f'\nopen({str(tmp_path / "ran")!r}, "w").close()\n')
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 2))
    np.savez(tmp_path / "reg.npz", x=x, y=np.sin(x[:, :1]))
    np.savez(tmp_path / "cls.npz", x=x, y=np.arange(16) % 3)
    return tmp_path


class FakeVerifyNetwork:
    """Stands in for the report (``ModuleProblem`` and ``verify_network``): records the arguments
    the command line passes, runs the network once and returns passing rows."""

    def __init__(self):
        self.calls = []

    def problem(self, module, x, y, *, likelihood="gaussian", prior_length_scale=1.0, tau=1.0,
                keep_probs=None, uncovered_dropout="refuse"):
        call = {"x": x, "y": y, "likelihood": likelihood, "tau": tau,
                "prior_length_scale": prior_length_scale, "uncovered_dropout": uncovered_dropout}
        self.calls.append(call)
        with torch.no_grad():
            module.to(torch.float64)(**x) if isinstance(x, dict) else module.to(torch.float64)(x)
        return call

    def __call__(self, module, x, y, *, problem, quick=False, thetas=None, show_progress=False):
        problem["thetas"] = thetas
        return [dict(r) for r in FAKE_ROWS]


@pytest.fixture
def fake_verify(monkeypatch):
    fake = FakeVerifyNetwork()
    monkeypatch.setattr(problem_module, "ModuleProblem", fake.problem)
    monkeypatch.setattr(verify_network_module, "verify_network", fake)
    monkeypatch.setattr(verify_network_module, "conversion_summary", lambda problem: {})
    return fake


def _cli_error(capsys, *argv) -> str:
    """Run ``verify argv``; assert exit code 2 and one line on stderr, no traceback; return it."""
    rc = cli.main(["verify", *map(str, argv), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def _parse_error(capsys, *argv) -> str:
    """Run ``verify argv``, refused by argparse: exit code 2, one error line (no usage)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", *map(str, argv), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    assert lines[0].endswith(" (see python -m vi_dropout verify --help)"), err
    return lines[0]


# --- 1. labels and dtypes ------------------------------------------------------------------------
@pytest.mark.parametrize("likelihood, arrays, message", [
    ("categorical", {"y": np.array([0.5, 1.5] * 8)}, "non-integer values (e.g. 0.5 at row 0)"),
    ("categorical", {"y": np.array([0, 1, 2, 1.25] * 4)}, "e.g. 1.25 at row 3"),
    ("categorical", {"y": np.array([0, 1, -1, 2] * 4)}, "negative values (e.g. -1 at row 2)"),
    ("categorical", {"y": np.arange(16) % 2 == 0}, "holds booleans"),
    ("categorical", {"y": np.arange(16) + 0j}, "complex numbers"),
    ("categorical", {"y": np.array([0.0, np.nan] * 8)}, "must be finite"),
    ("categorical", {"y": (np.arange(16) % 3)[:, None]}, "save y[:, 0]"),
    ("categorical", {"y": np.eye(16)[:, :3]}, "y.argmax(1)"),
    ("categorical", {"y": np.array(["a", "b"] * 8)}, "text (dtype <U1)"),
    ("categorical", {"y": np.full(16, 2.0**60)}, "too large"),
    ("gaussian", {"y": np.ones((16, 1)) * (1 + 2j)}, "imaginary part would be lost"),
    ("gaussian", {"x": np.ones((16, 2)) * 1j}, "array 'x' must hold real numbers, got complex"),
    ("gaussian", {"x": np.array([["a", "b"]] * 16)}, "array 'x' must hold real numbers, got text"),
    ("gaussian", {"y": np.ones((16, 1), dtype=bool)}, "holds booleans"),
    ("gaussian", {"y": np.ones(16)}, "save it as y.reshape(-1, 1)"),
    ("gaussian", {"x": np.full((16, 2), np.inf)}, "array 'x' must be finite, got 32 NaN or inf"),
    ("gaussian", {"x": np.full((16, 2), 2**60)}, "integers beyond 2**53"),
    ("gaussian", {"x": np.array(3.0)}, "array 'x' must have one row per example"),
    ("gaussian", {"x": np.ones((15, 2))}, "array 'x' has 15 rows but y has 16"),
    ("gaussian", {"y": np.ones((0, 1)), "x": np.ones((0, 2))}, "array 'y' holds no examples"),
])
def test_bad_arrays_are_refused(tmp_path, likelihood, arrays, message):
    data = {"x": np.ones((16, 2)), "y": np.ones((16, 1)) if likelihood == "gaussian"
            else np.arange(16) % 3}
    data.update(arrays)
    path = tmp_path / "d.npz"
    np.savez(path, **data)
    with pytest.raises(ValueError) as exc:
        load_data_file(str(path), likelihood)
    text = str(exc.value)
    assert text.startswith(f"--data: {str(path)!r}") and message in text, text


def test_object_arrays_are_not_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}] * 4, dtype=object), y=np.ones((4, 1)))
    with pytest.raises(ValueError, match=r"array 'x' holds Python objects .*allow_pickle=False"):
        load_data_file(str(path), "gaussian")


def test_good_arrays_are_converted_exactly(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(8, dtype=np.int32).reshape(4, 2), y=np.array([0.0, 2.0, 1.0, 0.0]))
    x, y = load_data_file(str(path), "categorical")
    assert x.dtype == torch.float64 and x.shape == (4, 2) and x[3, 1] == 7
    assert y.dtype == torch.int64 and y.tolist() == [0, 2, 1, 0]
    np.savez(path, x=np.ones((4, 2), dtype=np.float32), y=np.arange(8.0).reshape(4, 2))
    x, y = load_data_file(str(path), "gaussian")
    assert x.dtype == y.dtype == torch.float64 and y.shape == (4, 2)
    with pytest.raises(ValueError, match="likelihood must be 'gaussian' or 'categorical'"):
        load_data_file(str(path), "poisson")


def test_cli_refuses_fractional_labels(files, capsys):
    np.savez(files / "half.npz", x=np.ones((16, 2)), y=np.arange(16) % 3 + 0.5)
    line = _cli_error(capsys, "--model", f"{files}/mlp.py:make", "--data", files / "half.npz",
                      "--likelihood", "categorical")
    assert line.startswith("error: --data:") and "e.g. 0.5 at row 0" in line
    np.savez(files / "cplx.npz", x=np.ones((16, 2)), y=np.ones((16, 1)) + 1j)
    line = _cli_error(capsys, "--model", f"{files}/mlp.py:make", "--data", files / "cplx.npz")
    assert "array 'y' must hold real numbers, got complex" in line


# --- 2. the model file -------------------------------------------------------------------------
@pytest.mark.parametrize("code, message", [
    ("import sys\nsys.exit(0)\n", "importing '{f}' called sys.exit(0) (line 2)"),
    ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
    ("import sys\nsys.exit('bye')\n", "called sys.exit('bye')"),
    ("raise SystemExit\n", "called sys.exit() (line 1)"),
    ("raise KeyboardInterrupt\n", "importing '{f}' raised KeyboardInterrupt"),
    ("raise RuntimeError('no GPU here')\n", "importing '{f}' failed (line 1): RuntimeError: no "
                                            "GPU here"),
    ("def make(:\n", "failed: SyntaxError"),
    ("from torch import nn\ndef make():\n    import sys\n    sys.exit(0)\n",
     "make() of '{f}' called sys.exit(0) (line 4): make() must return the torch.nn.Module"),
    ("def make():\n    raise SystemExit(3)\n", "make() of '{f}' called sys.exit(3)"),
    ("def make():\n    raise KeyboardInterrupt\n", "make() of '{f}' raised KeyboardInterrupt"),
    ("def make():\n    return {}['k']\n", "make() of '{f}' failed (line 2): KeyError: 'k'"),
    ("def make(width):\n    pass\n", "make() of '{f}' failed: TypeError: make() missing 1"),
    ("def make():\n    return 3\n", "must return a torch.nn.Module, got int"),
    ("def other():\n    pass\n", "has no callable 'make' (it defines ['other'])"),
])
def test_model_files_that_exit_or_fail(tmp_path, capsys, code, message):
    path = _write(tmp_path, "user_model.py", code)
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), y=np.ones((4, 1)))
    with pytest.raises(ValueError) as exc:
        load_model_factory(f"{path}:make")
    assert message.format(f=path) in str(exc.value)
    line = _cli_error(capsys, "--model", f"{path}:make", "--data", tmp_path / "d.npz")
    assert line.startswith("error: --model") and message.format(f=path) in line


@pytest.mark.parametrize("spec, message", [
    ("{d}/missing.py:make", "file '{d}/missing.py' does not exist"),
    ("{d}:make", "is not a file"),
    ("{d}/mlp.py", "must be FILE.py:FACTORY"),
    ("{d}/mlp.py:1x", "must be FILE.py:FACTORY"),
    ("{d}/reg.npz:make", "is not a Python file"),
])
def test_bad_model_specs(files, spec, message):
    with pytest.raises(ValueError, match="--model") as exc:
        load_model_factory(spec.format(d=files))
    assert message.format(d=files) in str(exc.value)


def test_a_model_file_may_print_and_import_its_neighbours(tmp_path, capsys, fake_verify):
    _write(tmp_path, "helpers_for_user_model.py", "WIDTH = 8\n")
    path = _write(tmp_path, "printing.py", '''
        from dataclasses import dataclass

        from torch import nn

        from helpers_for_user_model import WIDTH

        print("building the model")


        @dataclass
        class Config:
            width: int = WIDTH


        def make():
            return nn.Sequential(nn.Linear(2, Config().width), nn.Dropout(0.1), nn.Linear(8, 1))
        ''')
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), y=np.ones((4, 1)))
    assert cli.main(["verify", "--model", f"{path}:make", "--data", str(tmp_path / "d.npz"),
                     "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "building the model" in out.out and out.err == ""
    assert str(tmp_path) not in map(str, __import__("sys").path)


def test_a_real_ctrl_c_while_the_model_file_runs_is_an_interruption(tmp_path, capsys):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not handled by Python's default handler here")
    path = _write(tmp_path, "slow.py", "import signal\nsignal.raise_signal(signal.SIGINT)\n")
    with pytest.raises(KeyboardInterrupt):
        load_model_factory(f"{path}:make")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), y=np.ones((4, 1)))
    assert cli.main(["verify", "--model", f"{path}:make", "--data", str(tmp_path / "d.npz"),
                     "--no-progress"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_a_forward_that_exits_during_the_report_is_one_line(tmp_path, capsys, fake_verify):
    path = _write(tmp_path, "exits.py", '''
        import sys
        from torch import nn


        class Net(nn.Module):
            def forward(self, x):
                sys.exit(0)
        ''')
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), y=np.ones((4, 1)))
    line = _cli_error(capsys, "--model", f"{path}:Net", "--data", tmp_path / "d.npz")
    assert "--model: running the network called sys.exit(0)" in line


# --- 3. --json may not overwrite an input ------------------------------------------------------
@pytest.mark.parametrize("which", ["data", "model", "data_symlink", "model_symlink",
                                   "data_hardlink", "data_relative"])
def test_json_equal_to_an_input_is_refused_before_any_work(files, capsys, monkeypatch, which):
    data, model = files / "reg.npz", files / "mlp.py"
    target = data if which.startswith("data") else model
    if which.endswith("symlink"):
        json_path = files / "link.json"
        json_path.symlink_to(target)
    elif which.endswith("hardlink"):
        json_path = files / "hard.json"
        os.link(target, json_path)
    elif which.endswith("relative"):
        monkeypatch.chdir(files)
        json_path = "./sub/../reg.npz"
        (files / "sub").mkdir()
    else:
        json_path = target
    before = data.read_bytes(), model.read_bytes()
    line = _cli_error(capsys, "--model", f"{model}:make", "--data", data, "--json", json_path)
    option = "--data" if which.startswith("data") else "--model"
    assert f"is the {option} file" in line and "would overwrite an input" in line
    assert not (files / "ran").exists(), "the model file ran before --json was checked"
    assert (data.read_bytes(), model.read_bytes()) == before


def test_json_next_to_the_inputs_is_fine(files, capsys, fake_verify):
    out = files / "rows.json"
    assert cli.main(["verify", "--model", f"{files}/mlp.py:make", "--data", str(files / "reg.npz"),
                     "--json", str(out), "--no-progress"]) == 0
    assert out.exists() and "rows written to" in capsys.readouterr().out


# --- 4. files that are not an .npz -------------------------------------------------------------
def _truncated(path):
    np.savez(path.with_suffix(".full.npz"), x=np.ones((64, 2)), y=np.ones((64, 1)))
    path.write_bytes(path.with_suffix(".full.npz").read_bytes()[:300])


def _bad_member(path):
    """A zip whose central directory is intact but whose array data is cut short."""
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, "
                             b"'shape': (64, 2), }" + b" " * 40 + b"\n" + b"\x00" * 16)
        zf.writestr("y.npy", b"")


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p.with_suffix(".npy"), np.ones((4, 2))) or p.with_suffix(".npy"),
     "got a .npy file (one array, numpy.save)"),
    (_truncated, "got a damaged or truncated zip archive (BadZipFile"),
    (lambda p: p.write_text("x,y\n1,2\n"), "got a file that is not a zip archive"),
    (lambda p: p.write_bytes(b""), "got an empty file"),
    (lambda p: p.write_bytes(__import__("pickle").dumps({"x": 1})), "got a pickle file"),
    (lambda p: np.savez(p, np.ones((4, 2)), np.ones((4, 1))),
     "has no array(s) ['x', 'y'] (it holds ['arr_0', 'arr_1']); expected arrays x (or 'input', "),
    (lambda p: np.savez(p, x=np.ones((4, 2))), "has no array(s) ['y'] (it holds ['x'])"),
    (_bad_member, "array 'x' cannot be read"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: None, "does not exist"),
])
def test_files_that_are_not_an_npz(files, capsys, make, message):
    path = files / "data.npz"
    made = make(path)
    path = made if isinstance(made, Path) else path
    line = _cli_error(capsys, "--model", f"{files}/mlp.py:make", "--data", path)
    assert line.startswith(f"error: --data: {str(path)!r}") or \
        line.startswith(f"error: --data: file {str(path)!r}"), line
    assert message in line, line
    if "does not exist" in message or "folder" in message or "not a zip" in message \
            or ".npy" in message:
        assert "an .npz archive written by numpy.savez with arrays x and y" in line
        assert not (files / "ran").exists(), "the model file ran before --data was checked"


def test_check_data_file_accepts_an_npz(files):
    assert check_data_file(str(files / "reg.npz")) == files / "reg.npz"


# --- 5. the forward's inputs name the arrays ---------------------------------------------------
@pytest.fixture
def two(tmp_path):
    path = _write(tmp_path, "two.py", TWO_INPUTS)
    rng = np.random.default_rng(1)
    arrays = {"image": rng.normal(size=(6, 1, 4, 4)), "features": rng.normal(size=(6, 3)),
              "y": rng.normal(size=(6, 1))}
    return load_model_factory(f"{path}:make"), tmp_path, arrays


def test_several_inputs_come_as_a_dict_named_after_the_forward(two):
    net, folder, arrays = two
    np.savez(folder / "d.npz", **arrays)
    x, y = load_data_file(str(folder / "d.npz"), "gaussian", module=net)
    assert set(x) == {"image", "features"}
    assert all(v.dtype == torch.float64 for v in x.values()) and y.dtype == torch.float64
    assert torch.equal(x["image"], torch.from_numpy(arrays["image"]))
    np.savez(folder / "d.npz", scale=np.full((6, 1), 2.0), **arrays)  # an optional parameter
    x, _ = load_data_file(str(folder / "d.npz"), "gaussian", module=net)
    assert set(x) == {"image", "features", "scale"}


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("features"), "has no array(s) ['features']"),
    (lambda a: a.update(x=a.pop("image")), "one array per parameter, named after it"),
    (lambda a: a.update(extra=np.ones((6, 2))), "does not take: ['extra']"),
    (lambda a: a.update(features=np.ones((5, 3))), "array 'features' has 5 rows but y has 6"),
    (lambda a: a.update(y=np.ones(6)), "save it as y.reshape(-1, 1)"),
])
def test_several_inputs_bad_arrays(two, change, message):
    net, folder, arrays = two
    change(arrays)
    np.savez(folder / "d.npz", **arrays)
    with pytest.raises(ValueError) as exc:
        load_data_file(str(folder / "d.npz"), "gaussian", module=net)
    assert message in str(exc.value)
    if "['features']" in message:
        assert "expected arrays image, features and y" in str(exc.value)


def test_one_input_by_x_or_by_its_own_name(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(2, 1))  # forward(self, input)
    for name in ("x", "input"):
        np.savez(tmp_path / "d.npz", **{name: np.ones((4, 2))}, y=np.ones((4, 1)))
        x, _ = load_data_file(str(tmp_path / "d.npz"), "gaussian", module=net)
        assert isinstance(x, torch.Tensor) and x.shape == (4, 2)
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), input=np.ones((4, 2)), y=np.ones((4, 1)))
    with pytest.raises(ValueError, match="holds both 'x' and 'input'"):
        load_data_file(str(tmp_path / "d.npz"), "gaussian", module=net)
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), x_test=np.ones((2, 2)), y=np.ones((4, 1)))
    with pytest.raises(ValueError, match=r"does not take: \['x_test'\]"):
        load_data_file(str(tmp_path / "d.npz"), "gaussian", module=net)


def test_forward_signatures_edge_cases(tmp_path):
    class TakesY(torch.nn.Module):
        def forward(self, x, y):
            return x

    class PositionalOnly(torch.nn.Module):
        def forward(self, a, b, /):
            return a + b

    class Anything(torch.nn.Module):
        def forward(self, *args, **kwargs):
            return args[0]

    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), y=np.ones((4, 1)))
    with pytest.raises(ValueError, match="parameter named 'y'"):
        load_data_file(str(tmp_path / "d.npz"), "gaussian", module=TakesY())
    x, _ = load_data_file(str(tmp_path / "d.npz"), "gaussian", module=Anything())
    assert isinstance(x, torch.Tensor)
    np.savez(tmp_path / "d.npz", b=np.ones((4, 2)), a=np.zeros((4, 2)), y=np.ones((4, 1)))
    x, _ = load_data_file(str(tmp_path / "d.npz"), "gaussian", module=PositionalOnly())
    assert isinstance(x, tuple) and float(x[0].sum()) == 0 and float(x[1].sum()) == 8


def test_cli_passes_a_two_input_network_its_dict(two, capsys, fake_verify):
    _, folder, arrays = two
    np.savez(folder / "d.npz", **arrays)
    assert cli.main(["verify", "--model", f"{folder}/two.py:make", "--data",
                     str(folder / "d.npz"), "--no-progress"]) == 0
    (call,) = fake_verify.calls
    assert set(call["x"]) == {"image", "features"} and call["y"].shape == (6, 1)
    arrays.pop("features")
    np.savez(folder / "d.npz", **arrays)
    line = _cli_error(capsys, "--model", f"{folder}/two.py:make", "--data", folder / "d.npz")
    assert "has no array(s) ['features']" in line


# --- 6. the help says that --model runs the file -----------------------------------------------
def test_help_says_the_model_file_is_run(capsys):
    with pytest.raises(SystemExit):
        cli.main(["verify", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("IMPORTS AND RUNS FILE.py") == 2 and "only pass files you trust" in out
    assert "top-level code executes" in out
    assert "IMPORTS AND RUNS" in load_model_factory.__doc__


# --- 7. the --model options reach verify_network ----------------------------------------------
@pytest.mark.parametrize("argv, thetas, uncovered", [
    ([], None, "refuse"),
    (["--theta", "1e-6"], (1e-6, 1e-7, 1e-8), "refuse"),
    (["--thetas", "1e-7,1e-5, 1e-6"], (1e-5, 1e-6, 1e-7), "refuse"),
    (["--disable-uncovered-dropout"], None, "disable"),
])
def test_model_options_are_passed_through(files, fake_verify, capsys, argv, thetas, uncovered):
    assert cli.main(["verify", "--model", f"{files}/mlp.py:make", "--data",
                     str(files / "cls.npz"), "--likelihood", "categorical",
                     "--prior-length-scale", "0.5", "--no-progress", *argv]) == 0
    (call,) = fake_verify.calls
    assert call["thetas"] == pytest.approx(thetas) if thetas else call["thetas"] is None
    assert call["uncovered_dropout"] == uncovered
    assert call["likelihood"] == "categorical" and call["prior_length_scale"] == 0.5
    assert call["y"].dtype == torch.int64


@pytest.mark.parametrize("argv, message", [
    (["--thetas", "1e-5"], "--thetas needs at least 2 distinct values"),
    (["--thetas", "1e-5,1e-5"], "--thetas must be distinct values, got 1e-05 more than once"),
    (["--thetas", "1e-5,0.00001,1e-6"], "got 1e-05 more than once"),
    (["--thetas", "1e-5,-1e-6"], "--thetas must be comma-separated finite numbers > 0"),
    (["--thetas", "1e-5,nan"], "got 'nan'"),
    (["--thetas", "1e-5,,1e-6"], "got ''"),
    (["--theta", "0"], "--theta must be a finite number > 0, got '0'"),
    (["--theta", "inf"], "--theta must be a finite number > 0"),
    (["--theta", "1e-5", "--thetas", "1e-5,1e-6"], "not allowed with argument"),
])
def test_bad_thetas_are_parse_errors(files, capsys, argv, message):
    line = _parse_error(capsys, "--model", f"{files}/mlp.py:make", "--data", files / "reg.npz",
                        *argv)
    assert message in line


@pytest.mark.parametrize("argv, message", [
    (["--theta", "1e-6"], "--theta: only with --model and --data"),
    (["--thetas", "1e-5,1e-6", "--tau", "2"], "--tau, --thetas: only with --model"),
    (["--disable-uncovered-dropout"], "--disable-uncovered-dropout: only with --model"),
    (["--likelihood", "categorical"], "--likelihood: only with --model"),
])
def test_model_options_without_a_model_are_refused(capsys, monkeypatch, argv, message):
    from vi_dropout.verify import paper as verify

    monkeypatch.setattr(verify, "run_verify", lambda **kw: pytest.fail("the report ran"))
    assert message in _cli_error(capsys, *argv)


def test_tau_with_a_categorical_likelihood_is_refused(files, capsys):
    line = _cli_error(capsys, "--model", f"{files}/mlp.py:make", "--data", files / "cls.npz",
                      "--likelihood", "categorical", "--tau", "2")
    assert "--tau is the precision of the Gaussian likelihood" in line


# --- 8. over-long --json names -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["a" * 300 + ".json", "b" * 300 + "/rows.json"])
def test_overlong_json_names_are_parse_errors(tmp_path, capsys, name):
    line = _parse_error(capsys, "--json", tmp_path / name)
    assert "error: --json: cannot write a file there: the name" in line
    assert "over the file system's limit" in line


def test_overlong_output_folder_names_are_argument_errors(tmp_path):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="over the file system's limit"):
        cli.output_dir_arg("--out")(str(tmp_path / ("c" * 300)))
