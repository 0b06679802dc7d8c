"""``diagnose`` subcommand end to end with ``--smoke`` on toy1d: report, records, NetCDF and
figures; the arguments become the run's settings."""

from __future__ import annotations

import math

import arviz as az
import pandas as pd
import pytest

from comparisons.cli import diagnose as cli_diagnose
from tests.common import subcommand_parser


def _parse(argv):
    return subcommand_parser(cli_diagnose.add_parser).parse_args(argv)


def test_parser_defaults_and_bad_arguments():
    args = _parse(["diagnose", "--out", "x"])
    assert args.func is cli_diagnose.run
    assert (args.dataset, args.split, args.epochs_multiplier, args.num_samples, args.hmc,
            args.hmc_chains, args.hmc_warmup, args.hmc_samples, args.hmc_max_train,
            args.hmc_processes) == ("toy1d", 0, 10.0, 1000, True, 4, 300, 300, None, 2)
    assert _parse(["diagnose", "--out", "x", "--no-hmc"]).hmc is False
    for bad in (["--num-samples", "0"], ["--hmc-chains", "0"], ["--hmc-max-train", "1"],
                ["--epochs-multiplier", "-1"], ["--split", "-2"]):
        with pytest.raises(SystemExit):
            _parse(["diagnose", "--out", "x", *bad])
    with pytest.raises(SystemExit):
        _parse(["diagnose"])  # --out is required
    assert _parse(["diagnose", "--out", "x", "--prior-length-scale", "1"]).prior_length_scale == 1
    settings = cli_diagnose.settings_from_args(
        _parse(["diagnose", "--out", "x", "--dataset", "yacht", "--split", "3", "--smoke"]))
    assert (settings.dataset, settings.split) == ("yacht", 3)
    assert {k: getattr(settings, k) for k in cli_diagnose.SMOKE} == cli_diagnose.SMOKE
    for bad in (["--prior-length-scale", "0"],
                ["--prior-length-scale", "1", "--hmc-prior-length-scale", "1"]):
        with pytest.raises(SystemExit):
            _parse(["diagnose", "--out", "x", *bad])


def test_smoke_run_writes_everything(tmp_path, capsys):
    out = tmp_path / "diag"
    args = _parse(["diagnose", "--dataset", "toy1d", "--out", str(out), "--smoke",
                   "--no-progress"])
    assert cli_diagnose.run(args) == 0
    printed = capsys.readouterr().out
    assert "PSIS-LOO on the training data" in printed and str(out / "report.md") in printed
    table = (out / "report.md").read_text()
    assert "| standard_dropout | n/a (no posterior) |" in table
    assert "Distance of each test predictive" in table
    records = pd.read_csv(out / "records.csv", keep_default_na=False, na_values=[""])
    assert set(records.method) == {"mc_dropout", "standard_dropout", "gp_arccos1", "hmc"}
    sd = records[(records.method == "standard_dropout") & (records.metric == "test_ll")]
    assert len(sd) == 1 and math.isfinite(float(sd.value.iloc[0]))
    for method in ("mc_dropout", "gp_arccos1", "hmc"):
        for part in ("train", "test"):
            idata = az.from_netcdf(out / f"{method}_{part}.nc")
            assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs")
            # the file name and the attribute spell the method the same way
            assert idata.posterior.attrs["method"] == method
    assert idata.posterior.attrs["sampler"] == "nuts"  # hmc_test.nc: HMC sampled by NUTS
    assert not (out / "standard_dropout_train.nc").exists()
    for png in ("ppc.png", "loo_pit.png", "bands.png"):
        assert (out / png).stat().st_size > 5000
    assert list((out / "nuts-cache").rglob("chain-*.npz"))


def test_methods_of_the_registry_on_the_command_line(tmp_path, capsys):
    """--methods takes registered methods (after --method-file); an unknown one is one line,
    exit code 2, and leaves no folder behind."""
    from comparisons.cli.main import main

    args = _parse(["diagnose", "--out", str(tmp_path / "o"), "--methods", "mfvi,swag",
                   "--method-file", "examples/swag_method.py"])
    assert args.methods == ("mfvi", "swag") and args.method_file == ["examples/swag_method.py"]
    out = tmp_path / "bad"
    assert main(["diagnose", "--smoke", "--no-hmc", "--methods", "nope", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "methods: 'nope' is not a registered method" in err[0]
    assert "nope" in err[0] and not out.exists()
