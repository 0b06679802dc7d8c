"""``hmc-reference`` end to end with ``--smoke``: a checked reference file with its manifest and
the summary, an unconverged run written and flagged (exit 1), a re-run that keeps the file, a
changed file recomputed, mismatched settings refused by name."""

from __future__ import annotations

import json
from dataclasses import replace

import arviz as az
import numpy as np
import pandas as pd
import pytest

from comparisons.cli import hmc_reference as cli_ref
from comparisons.experiments.hmc_reference import (
    ReferenceSettings,
    existing_reference,
    reference_files,
    reference_path,
)
from comparisons.reference.reference_file import (
    ReferenceMismatch,
    load_reference,
    manifest_path,
    save_reference,
)
from tests.common import subcommand_parser


def _parse(argv):
    return subcommand_parser(cli_ref.add_parser).parse_args(argv)


def test_parser_defaults_and_bad_arguments():
    args = _parse(["hmc-reference", "--out", "x"])
    assert args.dataset == cli_ref.SMALL and args.splits == (0,)
    assert (args.chains, args.warmup, args.samples, args.backend, args.prior_length_scale,
            args.max_draws) == (4, 1000, 1000, "numpyro", 1.0, 4000)
    assert _parse(["hmc-reference", "--out", "x", "--dataset", "yacht,toy1d",
                   "--splits", "0-2"]).splits == (0, 1, 2)
    for bad in (["--dataset", "nope"], ["--dataset", "yacht,yacht"], ["--chains", "1"],
                ["--splits", "x"], ["--backend", "stan"], ["--prior-length-scale", "0"],
                ["--target-accept-prob", "1"]):
        with pytest.raises(SystemExit):
            _parse(["hmc-reference", "--out", "x", *bad])
    settings = cli_ref.settings_from_args(_parse(["hmc-reference", "--out", "x", "--smoke"]),
                                          "yacht", 3)
    assert (settings.dataset, settings.split) == ("yacht", 3)
    assert {k: getattr(settings, k) for k in cli_ref.SMOKE} == cli_ref.SMOKE
    assert settings.dense_mass is False
    assert cli_ref.settings_from_args(_parse(["hmc-reference", "--out", "x", "--dense-mass"]),
                                      "yacht", 0).dense_mass is True


def test_settings_refuse_bad_values_by_name():
    for kwargs, match in (({"chains": 1}, "chains must be >= 2"),
                          ({"backend": "stan"}, "backend must be one of"),
                          ({"tau_standardized": 0.0}, "tau_standardized must be"),
                          ({"warmup": -1}, "warmup must be an integer >= 0"),
                          ({"dense_mass": 1}, "dense_mass must be True or False, got 1")):
        with pytest.raises(ValueError, match=match):
            ReferenceSettings(**kwargs)


def test_smoke_run_writes_checks_keeps_and_recomputes(tmp_path, capsys):
    out, cache = tmp_path / "ref", tmp_path / "cache"
    argv = ["hmc-reference", "--dataset", "yacht", "--out", str(out), "--cache-dir", str(cache),
            "--tau-standardized", "50", "--smoke", "--no-progress"]
    # 2 chains x 40 draws at tree depth 3 cannot pass the gate: written, flagged, exit 1
    assert cli_ref.run(_parse(argv)) == 1
    printed = capsys.readouterr()
    path = reference_path(out, "yacht", 0)
    assert f"written: {path} (NOT converged" in printed.out and "not converged" in printed.err
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["convergence"]["converged"] is False
    assert manifest["tau_standardized"] == 50.0 and manifest["tau_source"] == "given"
    assert manifest["sampler"]["backend"] == "numpyro" and manifest["draws_kept"] == 80
    assert manifest["architecture"]["widths"] == [6, 50, 1]
    idata = az.from_netcdf(path)
    assert idata.posterior["f"].shape == (2, 40, manifest["num_test"])
    assert idata.posterior["f"].dtype == np.float32
    assert set(idata.children) == {"posterior", "sample_stats", "observed_data",
                                   "constant_data"}
    assert idata.sample_stats["diverging"].dtype == bool
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[0, "dataset"] == "yacht" and not summary.loc[0, "converged"]
    assert "| yacht split 0 | **no** |" in (out / "summary.md").read_text()
    # mismatched expectations are refused by name
    with pytest.raises(ReferenceMismatch, match="prior_length_scale: expected 0.5"):
        load_reference(path, expect={"prior_length_scale": 0.5, "dataset": "yacht"})

    # the same command again keeps the file untouched; the summary lists every reference file
    # under OUT, also those an earlier command wrote (here a copy under another name)
    (out / "other").mkdir()
    (out / "other" / "split-03.nc").write_bytes(path.read_bytes())
    (out / "other" / "split-03.nc.manifest.json").write_bytes(manifest_path(path).read_bytes())
    mtime = path.stat().st_mtime_ns
    assert cli_ref.run(_parse(argv)) == 1
    assert f"kept: {path}" in capsys.readouterr().out and path.stat().st_mtime_ns == mtime
    assert len(pd.read_csv(out / "summary.csv")) == 2
    assert f"| yacht split 0 ({path}) | **no** |" in (out / "summary.md").read_text()
    assert reference_files(out) == [out / "other" / "split-03.nc", path]
    # a manifest made before a settings field existed is kept when the field is at its
    # default (what the file was made with), not when the run asks for another value
    settings = cli_ref.settings_from_args(_parse(argv), "yacht", 0)
    original = path.read_bytes(), manifest_path(path).read_bytes()
    older = {k: v for k, v in manifest.items() if k not in (
        "manifest_format", "file", "sha256", "size_bytes", "convergence", "manifest_sha256")}
    older["settings"] = {k: v for k, v in manifest["settings"].items()
                         if k != "target_accept_prob"}
    save_reference(idata, path, manifest=older)  # as a version without the field wrote it
    assert existing_reference(out, settings) == path
    with pytest.raises(ReferenceMismatch, match="target_accept_prob.*pass --replace"):
        existing_reference(out, replace(settings, target_accept_prob=0.9))
    with pytest.warns(RuntimeWarning, match="recomputing .*target_accept_prob"):
        assert existing_reference(out, replace(settings, target_accept_prob=0.9),
                                  replace_other_settings=True) is None
    # an edited manifest is never "the same settings": refused by name, recomputed
    edited = dict(json.loads(original[1]), tau_standardized=51.0)
    path.write_bytes(original[0])
    manifest_path(path).write_text(json.dumps(edited))
    with pytest.warns(RuntimeWarning, match=r"edited after it was saved \(tau_standardized: "
                                            r"saved 50.0, now 51.0\)"):
        assert existing_reference(out, settings) is None
    manifest_path(path).write_bytes(original[1])
    # a changed file is recomputed (from the chain cache) and replaced
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.warns(RuntimeWarning, match="checksum .* differs"):
        assert cli_ref.run(_parse(argv)) == 1
    assert f"written: {path}" in capsys.readouterr().out
    # its NUTS wall time is a cache load, and the summary says so
    assert json.loads(manifest_path(path).read_text())["chains_from_cache"] == [True, True]
    assert pd.read_csv(out / "summary.csv").set_index("file").loc[
        str(path), "chains_from_cache"] == 2
    assert "(2 of 2 chains from the cache)" in (out / "summary.md").read_text()
    reloaded, _ = load_reference(path, expect={"settings": manifest["settings"]})
    np.testing.assert_array_equal(reloaded.posterior["f"].values, idata.posterior["f"].values)

    # --seed other than the file's: one line naming it, exit 2, the file untouched (it used to
    # be overwritten after a warning); a second run while one holds OUT is refused at once
    from comparisons.cli.main import main
    from comparisons.runner.folder_lock import FolderLock

    argv = [*argv, "--seed", "0"]
    data = path.read_bytes()
    capsys.readouterr()
    assert main([*argv[:-1], "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "settings.seed: expected 3, the reference has 0" in err
    assert "pass --replace" in err and path.read_bytes() == data
    with FolderLock(out):
        assert main(argv) == 2
    assert "is in use by another run" in capsys.readouterr().err
    # the manifest deleted: the file's own copy still says seed 0, so seed 3 is still refused
    manifest_path(path).unlink()
    assert main([*argv[:-1], "3"]) == 2
    err = capsys.readouterr().err
    assert "the reference file itself was made with other settings (settings.seed: expected " \
           "3, the file has 0)" in err and path.read_bytes() == data
