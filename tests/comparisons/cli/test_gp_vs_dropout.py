"""``gp-vs-dropout`` subcommand end to end on tiny settings: toy1d (with the figure) and yacht;
the arguments become the experiment's settings."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from comparisons.cli import gp_vs_dropout as cli_gp_vs_dropout
from tests.common import subcommand_parser


def _parse(argv):
    return subcommand_parser(cli_gp_vs_dropout.add_parser).parse_args(argv)


def test_parser_defaults():
    args = _parse(["gp-vs-dropout", "--out", "x"])
    assert args.command == "gp-vs-dropout" and args.func is cli_gp_vs_dropout.run
    assert (args.dataset, args.split, args.epochs_multiplier, args.num_samples,
            args.gp_iterations, args.gp_optimizer) == ("toy1d", 0, 10.0, 10_000, 200, "lbfgs")
    with pytest.raises(SystemExit):
        _parse(["gp-vs-dropout", "--out", "x", "--gp-optimizer", "newton"])
    with pytest.raises(SystemExit):
        _parse(["gp-vs-dropout"])  # --out is required


def test_toy1d_end_to_end(tmp_path, capsys):
    out = tmp_path / "toy"
    args = _parse(["gp-vs-dropout", "--dataset", "toy1d", "--toy-num-train", "40",
                   "--epochs-multiplier", "0.01", "--num-samples", "50", "--gp-iterations", "3",
                   "--max-grid", "1", "--out", str(out), "--no-progress"])
    assert cli_gp_vs_dropout.run(args) == 0
    printed = capsys.readouterr().out
    assert "# MC dropout vs exact GPs: toy1d, split 0" in printed
    assert f"outputs: {out / 'report.md'}" in printed
    table = (out / "report.md").read_text()
    assert printed.startswith(table)  # the report is printed as written
    assert "| mc_dropout |" in table and "| gp_arccos1_prior |" in table
    assert "epochs x0.01, T = 50, max grid 1" in table
    csv = pd.read_csv(out / "records.csv")
    records = json.loads((out / "records.json").read_text())
    assert len(csv) == len(records) > 0
    assert set(csv["method"]) == {"mc_dropout", "gp_arccos1_prior", "gp_rf_prior", "gp_arccos1",
                                  "gp_se"}
    assert set(csv.columns) >= {"dataset", "method", "split", "metric", "value"}
    assert csv["value"].notna().all()
    png = out / "toy1d.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    # atomic writes left no temporary files, and the old table.md name is gone
    assert sorted(p.name for p in out.iterdir()) == ["records.csv", "records.json", "report.md",
                                                      "toy1d.png"]


def test_uci_end_to_end(tmp_path, capsys):
    out = tmp_path / "yacht"
    args = _parse(["gp-vs-dropout", "--dataset", "yacht", "--split", "1", "--max-grid", "1",
                   "--epochs-multiplier", "0.05", "--num-samples", "20", "--gp-iterations", "3",
                   "--no-random-features", "--out", str(out), "--no-progress"])
    assert cli_gp_vs_dropout.run(args) == 0
    assert "yacht, split 1" in capsys.readouterr().out
    csv = pd.read_csv(out / "records.csv")
    assert set(csv["method"]) == {"mc_dropout", "gp_arccos1_prior", "gp_arccos1", "gp_se"}
    assert (csv["split"] == 1).all() and (csv["dataset"] == "yacht").all()
    assert not (out / "toy1d.png").exists()
    assert "kl[" not in (out / "report.md").read_text()  # regions only for the toy


def test_bad_arguments(tmp_path, capsys):
    args = _parse(["gp-vs-dropout", "--out", str(tmp_path)])
    args.threads = 0  # built by hand: run() checks too
    with pytest.raises(ValueError, match="--threads must be >= 1, got 0"):
        cli_gp_vs_dropout.run(args)
    for bad in (["--threads", "0"], ["--dataset", "nope"], ["--num-samples", "0"]):
        with pytest.raises(SystemExit):
            _parse(["gp-vs-dropout", "--out", str(tmp_path), *bad])
    assert "unknown UCI data set 'nope'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="split 99 out of range for yacht"):
        cli_gp_vs_dropout.run(_parse(["gp-vs-dropout", "--dataset", "yacht", "--split", "99",
                                      "--out", str(tmp_path), "--no-progress"]))


def test_arguments_become_the_settings():
    args = _parse(["gp-vs-dropout", "--dataset", "yacht", "--split", "2", "--out", "x",
                   "--gp-optimizer", "adam", "--no-random-features", "--max-grid", "3"])
    s = cli_gp_vs_dropout.settings_from_args(args)
    assert (s.dataset, s.split, s.gp_optimizer, s.max_grid) == ("yacht", 2, "adam", 3)
    assert "gp_rf_prior" not in s.methods and s.num_samples == 10_000
