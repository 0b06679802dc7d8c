"""``python -m comparisons``: every subcommand is registered and reachable through ``main``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from comparisons.cli.main import SUBCOMMAND_MODULES, main


@pytest.mark.parametrize("command", list(SUBCOMMAND_MODULES))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_every_subcommand_module_is_registered_with_its_run():
    from comparisons.cli.main import build_parser

    parser, modules = build_parser()
    assert list(modules) == list(SUBCOMMAND_MODULES) and "uci" in modules
    for name, module in modules.items():
        assert callable(module.run) and callable(module.add_parser), name
    args = parser.parse_args(["uci", "--dataset", "yacht", "--out", "x"])
    assert args.func is modules["uci"].run


def test_unknown_subcommand_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_rotated_digit_runs_through_main(tmp_path):
    out = tmp_path / "rd"
    assert main(["rotated-digit", "--out", str(out), "--epochs", "1", "--num-samples", "2",
                 "--no-progress"]) == 0
    assert (out / "rotated_digit.png").is_file() and (out / "report.md").is_file()


def test_uci_methods_option_is_checked(tmp_path, capsys):
    """An id the registry does not hold: one line naming the registered ones, before any work
    (the registry is read when the run starts, after --method-file)."""
    assert main(["uci", "--dataset", "yacht", "--splits", "0", "--methods", "hmc",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--methods: unknown method 'hmc'; registered: mc_dropout, gp" in err
    assert not (tmp_path / "o").exists()


def test_uci_help_lists_data_sets_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["uci", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("bostonHousing", "structure (5 splits)", "yacht", "165 cells"):
        assert name in text
    for default in ("(default: 0-19)", "(default: 10)", "(default: 10000)", "(default: 3000)",
                    "(default: mc_dropout)", "(default: 0)", "(default: local)"):
        assert default in text, default


@pytest.mark.parametrize("command", list(SUBCOMMAND_MODULES))
def test_shared_flags_are_spelled_the_same(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "--drop-rate" not in text  # one spelling: --keep-prob (probability a unit is KEPT)
    if command not in ("demo", "uci-table"):  # uci-table only reads records: no torch, no draws
        assert "--threads" in text and "--seed" in text
    if command in ("mauna-loa", "rotated-digit", "pitfalls"):
        assert "--keep-prob" in text
    if command in ("mauna-loa", "pitfalls"):
        assert "--iterations" in text and "--steps" not in text


def test_uci_deep_ensemble_runs_and_checks_its_options(tmp_path, capsys):
    out = tmp_path / "de"
    argv = ["uci", "--dataset", "yacht", "--splits", "0-1", "--methods", "deep_ensemble",
            "--ensemble-size", "2", "--ensemble-epochs", "3", "--ensemble-lrs", "0.01,0.001",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    text = (out / "report.md").read_text()
    assert "| yacht | deep_ensemble |" in text
    records = pd.read_csv(out / "records.csv")
    lr = records[records.metric == "lr"].value
    assert len(lr) == 2 and set(lr) <= {0.01, 0.001}
    assert set(records[records.metric == "epochs"].value) == {3}
    settings = json.loads((out / "settings.json").read_text())["settings"]
    assert settings["ensemble_lrs"] == [0.01, 0.001] and settings["ensemble_epochs"] == 3
    assert main(argv) == 0  # resumes: the settings read back equal the parsed ones
    for bad, option in ((["--ensemble-size", "0"], "--ensemble-size"),
                        (["--ensemble-epochs", "0"], "--ensemble-epochs"),
                        (["--ensemble-lrs", "0.1,-1"], "--ensemble-lrs"),
                        (["--ensemble-lrs", "0.1,0.1"], "--ensemble-lrs")):
        with pytest.raises(SystemExit) as exc:
            main(["uci", "--dataset", "yacht", "--out", str(out), *bad])
        assert exc.value.code == 2
        assert option in capsys.readouterr().err


def test_uci_laplace_runs_and_a_missing_library_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "la"
    assert main(["uci", "--dataset", "yacht", "--splits", "0", "--methods", "laplace",
                 "--epochs-multiplier", "0.05", "--out", str(out), "--no-progress"]) == 0
    assert "| yacht | laplace |" in (out / "report.md").read_text()
    import comparisons.protocols.uci_laplace as ul

    monkeypatch.setattr(ul, "laplace_available", lambda: False)
    capsys.readouterr()
    assert main(["uci", "--dataset", "yacht", "--methods", "laplace", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install '.[laplace]'" in err


def test_uci_runs_every_method_id_end_to_end(tmp_path):
    """``--methods`` with every id of UCI_METHODS on one tiny split: each writes its cell and a
    row of the report, in one folder; a second run resumes without recomputing."""
    from comparisons.protocols.registry import builtin_method_ids

    UCI_METHODS = builtin_method_ids()

    out = tmp_path / "all"
    argv = ["uci", "--dataset", "yacht", "--splits", "0", "--methods", ",".join(UCI_METHODS),
            "--epochs-multiplier", "0.02", "--num-samples", "20", "--max-grid", "2",
            "--ensemble-size", "2", "--ensemble-epochs", "2", "--ensemble-lrs", "0.01",
            "--gp-max-fit-size", "100", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    records = pd.read_csv(out / "records.csv")
    report = (out / "report.md").read_text()
    methods = set(UCI_METHODS) - {"gp"} | {"gp_arccos1", "gp_se"}  # gp: the two kernels
    assert set(records.method) == methods
    for method in methods:
        rows = records[(records.method == method) & (records.metric == "test_ll")]
        assert len(rows) == 1 and np.isfinite(rows.value).all(), method
        assert f"| yacht | {method} |" in report
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert main(argv) == 0
    assert sorted(p.name for p in (out / "cells").iterdir()) == cells


def test_uci_refuses_another_seed_when_settings_json_is_gone(tmp_path, capsys):
    """settings.json deleted between two runs: the cells still say they were made with seed 0,
    so a run with --seed 1 ends in one line and exit 2, and records.csv is not mixed."""
    out = tmp_path / "u"
    argv = ["uci", "--dataset", "yacht", "--splits", "0", "--epochs-multiplier", "0.02",
            "--num-samples", "10", "--max-grid", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    before = (out / "records.csv").read_text()
    (out / "settings.json").unlink()
    capsys.readouterr()
    assert main([*argv, "--seed", "1", "--splits", "0-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: results folder ")
    assert "seed 0 -> 1" in err and "settings.json does not say so" in err
    assert (out / "records.csv").read_text() == before
    assert main(argv) == 0 and (out / "records.csv").read_text() == before  # same seed resumes
