"""Scoring against a saved reference, on synthetic reference files (i.i.d. draws, so a 4 x 300
file passes the gate and a shifted-chain one fails it): the records, HMC's mixture log-likelihood,
the summary over converged references only, the "unconverged" title, mismatched files refused,
and the CLI end to end."""

from __future__ import annotations

import dataclasses
import math

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from comparisons.cli import reference_scores as cli_scores
from comparisons.datasets.splits import load_split
from comparisons.experiments.hmc_reference import reference_path
from comparisons.experiments.reference_scores import (
    SCORED_METHODS,
    ScoreSettings,
    hmc_predictive,
    run,
    score_cell_id,
)
from comparisons.reference.reference_file import ReferenceFileError, save_reference
from comparisons.report.reference_scores import ranking, report_markdown, write_report
from comparisons.runner.store import ResultsStore
from tests.common import subcommand_parser

TAU_S = 40.0


def _fake_reference(folder, dataset: str, split: int, *, converged: bool, seed: int = 0):
    """A reference file for ``dataset``/``split`` whose f draws scatter around the test targets
    (original scale); ``converged=False`` shifts one chain by 3 sd (R-hat >> 1.01)."""
    name, raw, std = load_split(dataset, split, toy_num_train=200)
    y = np.asarray(raw.y_test, dtype=np.float64)[:, 0]
    rng = np.random.default_rng(seed)
    sd = 0.1 * float(std.y_std)
    f = y + sd * rng.standard_normal((4, 300, y.size))
    if not converged:
        f[0] += 3 * sd
    idata = az.from_dict({"posterior": {"f": f},
                         "sample_stats": {"diverging": np.zeros((4, 300), dtype=bool)}})
    manifest = {"dataset": name, "split": split, "settings": {"toy_num_train": 200},
                "prior": "N(0, l^-2), l = 1", "prior_length_scale": 1.0,
                "tau_standardized": TAU_S, "y_mean": float(std.y_mean),
                "y_std": float(std.y_std)}
    return save_reference(idata, reference_path(folder, name, split), manifest=manifest), f, y


def test_scores_records_summary_and_unconverged_title(tmp_path):
    _, f, y = _fake_reference(tmp_path, "yacht", 0, converged=True)
    _fake_reference(tmp_path, "boston", 0, converged=False, seed=1)
    result = run(ScoreSettings(reference_dir=str(tmp_path), datasets=("yacht", "boston"),
                               methods=("gp_arccos1_prior", "gp_arccos1"), gp_iterations=5))
    rec = pd.DataFrame(result.records)
    yacht = rec[rec.dataset == "yacht"].set_index(["method", "metric"]).value
    assert yacht["hmc", "reference_converged"] == 1.0
    # HMC's test LL is the mixture over its 1200 draws (recomputed directly)
    _, raw, std = load_split("yacht", 0)
    noise_sd = float(std.y_std) / math.sqrt(TAU_S)
    ll = norm.logpdf(y, loc=f.reshape(-1, y.size), scale=noise_sd)
    assert yacht["hmc", "test_ll"] == pytest.approx(
        float(np.mean(logsumexp(ll, axis=0) - math.log(1200))), rel=1e-10)
    for method in ("gp_arccos1_prior", "gp_arccos1"):
        assert 0 <= yacht[method, "tv_vs_hmc"] <= 1
        assert 0 <= yacht[method, "hmc_mass_95"] <= 1
        assert np.isfinite(yacht[method, "test_ll"])
    boston = rec[rec.dataset == "bostonHousing"]
    assert (boston.note == "unconverged reference").all()
    assert boston[(boston.method == "hmc") & (boston.metric == "reference_converged")
                  ].value.iloc[0] == 0.0
    # the summary uses the converged reference only
    rank = ranking(rec)
    assert set(rank.method) == {"gp_arccos1_prior", "gp_arccos1"}
    assert (rank.references == 1).all() and sorted(rank.mean_rank) == [1.0, 2.0]
    paths = write_report(result, tmp_path / "report")
    text = paths["report"].read_text()
    assert "## bostonHousing, split 0 (unconverged reference: not used in the summary)" in text
    assert "## yacht, split 0\n" in text and "Gate failed: max R-hat" in text
    assert paths["figure"].stat().st_size > 5000


def test_summary_names_the_priors_when_the_references_differ_in_prior():
    records = pd.DataFrame(
        [{"dataset": d, "split": 0, "method": m, "metric": metric, "value": v, "note": ""}
         for d in ("yacht", "concrete")
         for m, metric, v in (("hmc", "reference_converged", 1.0), ("a", "tv_vs_hmc", 0.1),
                              ("b", "tv_vs_hmc", 0.2))])
    conv = {"converged": True, "max_r_hat": 1.0, "min_ess_bulk": 500.0, "min_ess_tail": 500.0,
            "divergences": 0, "num_chains": 4, "num_draws": 100, "reasons": []}
    refs = {(d, 0): {"prior": f"l = {length}", "prior_length_scale": length,
                     "tau_standardized": 1.0, "convergence": conv}
            for d, length in (("yacht", 1.0), ("concrete", 2.0))}
    text = report_markdown(records, refs)
    assert ("The summarised references differ in prior: l = 1 (yacht split 0); l = 2 "
            "(concrete split 0).") in text
    refs["concrete", 0] = dict(refs["concrete", 0], prior_length_scale=1.0)
    assert "differ in prior" not in report_markdown(records, refs)


def test_hmc_predictive_and_refused_files(tmp_path):
    path, f, _ = _fake_reference(tmp_path, "yacht", 0, converged=True)
    idata = az.from_netcdf(path)
    draws, noise_var = hmc_predictive(idata, {"y_std": 2.0, "tau_standardized": 4.0})
    assert draws.shape == (1200, f.shape[-1]) and noise_var == 1.0
    np.testing.assert_array_equal(draws, f.reshape(1200, -1))
    with pytest.raises(ReferenceFileError, match="is missing"):
        run(ScoreSettings(reference_dir=str(tmp_path), datasets=("yacht",), splits=(1,),
                          methods=("gp_arccos1_prior",)))
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ReferenceFileError, match="checksum"):
        run(ScoreSettings(reference_dir=str(tmp_path), datasets=("yacht",),
                          methods=("gp_arccos1_prior",)))
    with pytest.raises(ValueError, match="methods must be distinct names of mc_dropout"):
        ScoreSettings(reference_dir=str(tmp_path), methods=("hmc",))


def test_cli_smoke_with_mc_dropout(tmp_path, capsys):
    _fake_reference(tmp_path / "ref", "yacht", 0, converged=True)
    parser = subcommand_parser(cli_scores.add_parser)
    args = parser.parse_args(["reference-scores", "--reference", str(tmp_path / "ref"),
                              "--dataset", "yacht", "--out", str(tmp_path / "out"), "--smoke",
                              "--cache-dir", str(tmp_path / "cache")])
    assert cli_scores.run(args) == 0
    assert "outputs:" in capsys.readouterr().out
    rec = pd.read_csv(tmp_path / "out" / "records.csv")
    assert set(rec.method) == {"hmc", *SCORED_METHODS}
    tv = rec[rec.metric == "tv_vs_hmc"].set_index("method").value
    assert ((tv >= 0) & (tv <= 1)).all() and len(tv) == len(SCORED_METHODS)
    # the re-run reads the stored cell back (nothing fitted: no predictives) and writes the
    # same records
    store = ResultsStore(tmp_path / "cache")
    assert len(store.done_cells()) == 1
    again = run(cli_scores.settings_from_args(args), store=store)
    assert again.predictives == {}
    pd.testing.assert_frame_equal(pd.DataFrame(again.records)[rec.columns],
                                  rec.assign(note=rec.note.fillna("")),  # "" reads back as NaN
                                  check_dtype=False)
    for bad in (["--methods", "hmc"], ["--methods", "gp_se,gp_se"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["reference-scores", "--reference", str(tmp_path / "ref"),
                               "--out", "o", *bad])


def test_predictives_match_records_and_toy_bands(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from comparisons.report.reference_scores import plot_toy_reference_bands

    _, f, y = _fake_reference(tmp_path, "toy1d", 0, converged=True)
    result = run(ScoreSettings(reference_dir=str(tmp_path), datasets=("toy1d",),
                               methods=("gp_arccos1_prior",), gp_iterations=5))
    preds = result.predictives[("toy1d", 0)]
    assert set(preds) == {"hmc", "gp_arccos1_prior"}
    # the reference's predictive is the moment match of its draws plus the noise variance
    _, _, data = load_split("toy1d", 0, toy_num_train=200)
    noise_var = float(data.y_std) ** 2 / TAU_S
    draws = f.reshape(-1, y.size)
    np.testing.assert_allclose(preds["hmc"].mean, draws.mean(0), rtol=1e-12)
    np.testing.assert_allclose(preds["hmc"].var, draws.var(0) + noise_var, rtol=1e-10)
    rec = pd.DataFrame(result.records).set_index(["method", "metric"]).value
    gp = preds["gp_arccos1_prior"]
    assert rec["gp_arccos1_prior", "rmse"] == pytest.approx(
        math.sqrt(float(np.mean((y - gp.mean) ** 2))), rel=1e-12)
    fig, ax = plt.subplots()
    assert plot_toy_reference_bands(preds, data, ax) is ax
    assert len(ax.lines) >= 3  # HMC's mean, the GP's mean and edges, the true function
    with pytest.raises(ValueError, match="methods must be among"):
        plot_toy_reference_bands(preds, data, ax, methods=("gp_se",))
    with pytest.raises(ValueError, match="must hold the 'hmc' reference"):
        plot_toy_reference_bands({"gp_arccos1_prior": gp}, data, ax)
    shorter = dataclasses.replace(data, x_test_raw=data.x_test_raw[:-1])
    with pytest.raises(ValueError, match="not the same split"):
        plot_toy_reference_bands(preds, shorter, ax)
    plt.close(fig)


def test_score_cell_changes_with_the_reference_and_settings(tmp_path):
    _fake_reference(tmp_path, "yacht", 0, converged=True)
    settings = ScoreSettings(reference_dir=str(tmp_path), datasets=("yacht",),
                             methods=("gp_arccos1_prior",), gp_iterations=5)
    store = ResultsStore(tmp_path / "cache")
    first = run(settings, store=store)
    assert set(first.predictives) == {("yacht", 0)}
    cell = score_cell_id(first.references[("yacht", 0)], settings)
    assert store.done_cells() == {cell}
    # other data sets or folders do not change the cell; another setting or reference does
    assert score_cell_id(first.references[("yacht", 0)], dataclasses.replace(
        settings, datasets=("yacht", "boston"), reference_dir="elsewhere")) == cell
    assert score_cell_id(first.references[("yacht", 0)],
                         dataclasses.replace(settings, gp_iterations=6)) != cell
    _fake_reference(tmp_path, "yacht", 0, converged=True, seed=5)  # a new reference file
    second = run(settings, store=store)
    assert set(second.predictives) == {("yacht", 0)} and len(store.done_cells()) == 2


def test_cli_heals_a_damaged_cache_cell_and_refuses_a_second_run(tmp_path, capsys):
    """A truncated or edited cell in --cache-dir is moved aside and scored again (it used to
    wedge every later run with "cell ... is already recorded"); a run while another holds the
    report folder or the cache is refused at once."""
    from comparisons.runner.folder_lock import FolderLock, ResultsFolderBusy
    from comparisons.runner.store import DamagedCellWarning

    _fake_reference(tmp_path / "ref", "yacht", 0, converged=True)
    parser = subcommand_parser(cli_scores.add_parser)
    args = parser.parse_args(["reference-scores", "--reference", str(tmp_path / "ref"),
                              "--dataset", "yacht", "--out", str(tmp_path / "out"),
                              "--methods", "gp_arccos1_prior", "--gp-iterations", "5",
                              "--cache-dir", str(tmp_path / "cache")])
    assert cli_scores.run(args) == 0
    first = pd.read_csv(tmp_path / "out" / "records.csv")
    (cell,) = (tmp_path / "cache" / "cells").glob("*.json")
    for damage in ("truncate", "edit"):
        text = cell.read_text()
        cell.write_text(text[: len(text) // 2] if damage == "truncate"
                        else text.replace('"value": ', '"value": 1', 1))
        with pytest.warns(DamagedCellWarning, match="moved to"):
            assert cli_scores.run(args) == 0
        again = pd.read_csv(tmp_path / "out" / "records.csv")
        timed = first.metric == "wall_time_s"  # the refit's own clock; every score is the same
        pd.testing.assert_frame_equal(again[~timed], first[~timed])
        assert (again[timed].value != first[timed].value).all()  # it was fitted again
        assert ResultsStore(tmp_path / "cache").damaged_cells() == {}
    assert len(list((tmp_path / "cache" / "damaged").iterdir())) == 2
    for busy in (tmp_path / "out", tmp_path / "cache"):
        with FolderLock(busy), pytest.raises(ResultsFolderBusy, match="in use by another run"):
            cli_scores.run(args)


def test_an_edited_manifest_is_refused_not_served_from_the_cache(tmp_path, capsys):
    """Editing tau_standardized in a manifest (which changed 26 of 90 scores when it was
    trusted) ends in one line naming the key, exit 2, also when the cache holds its scores."""
    from comparisons.cli.main import main
    from comparisons.reference.reference_file import manifest_path

    path, _, _ = _fake_reference(tmp_path / "ref", "yacht", 0, converged=True)
    argv = ["reference-scores", "--reference", str(tmp_path / "ref"), "--dataset", "yacht",
            "--out", str(tmp_path / "out"), "--methods", "gp_arccos1_prior",
            "--gp-iterations", "5", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    before = (tmp_path / "out" / "records.csv").read_text()
    mpath = manifest_path(path)
    mpath.write_text(mpath.read_text().replace(f'"tau_standardized": {TAU_S}',
                                               '"tau_standardized": 80.0'))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was edited after it was saved" in err
    assert f"tau_standardized: saved {TAU_S}, now 80.0" in err
    assert (tmp_path / "out" / "records.csv").read_text() == before


def test_psis_of_the_posterior_against_the_dropout_family_is_opt_in(tmp_path, monkeypatch):
    """--psis-draws adds Pareto k, the ESS and the PSIS-LOO (reweighted to the posterior and
    plain) per theta to mc_dropout's records; without it the records and the cell ids are what
    they were."""
    _fake_reference(tmp_path, "yacht", 0, converged=True)
    base = ScoreSettings(reference_dir=str(tmp_path), datasets=("yacht",), methods=("mc_dropout",),
                         epochs_multiplier=0.05, num_samples=20)
    with_psis = dataclasses.replace(base, psis_draws=300, psis_thetas=(0.1, 0.01))
    rec = pd.DataFrame(run(with_psis).records).set_index(["method", "metric"]).value
    for theta in ("0.1", "0.01"):
        k, ess = rec["mc_dropout", f"psis_k[theta={theta}]"], rec["mc_dropout",
                                                                  f"psis_ess[theta={theta}]"]
        assert not np.isnan(k) and 1.0 <= ess <= 300  # k may be inf (see vi_psis)
        # the PSIS-LOO of the training data from the same draws, reweighted and plain
        assert np.isfinite(rec["mc_dropout", f"psis_loo_posterior[theta={theta}]"])
        assert np.isfinite(rec["mc_dropout", f"psis_loo_q[theta={theta}]"])
        assert 0 <= rec["mc_dropout", f"psis_loo_posterior_k_bad[theta={theta}]"]
        assert 0 <= rec["mc_dropout", f"psis_loo_q_k_bad[theta={theta}]"]
    # a narrower family misses more of the posterior
    assert rec["mc_dropout", "psis_k[theta=0.01]"] > 0.7
    manifest = {"dataset": "yacht", "split": 0, "sha256": "a", "manifest_sha256": "b"}
    assert score_cell_id(manifest, base) == score_cell_id(
        manifest, dataclasses.replace(base, psis_thetas=(0.5,)))  # off: not in the id
    assert score_cell_id(manifest, with_psis) != score_cell_id(manifest, base)
    # a cell of an earlier PSIS record layout (without the PSIS-LOO) is not reused
    import comparisons.experiments.reference_scores as reference_scores

    now = score_cell_id(manifest, with_psis)
    monkeypatch.setattr(reference_scores, "PSIS_RECORDS_VERSION", 1)
    assert score_cell_id(manifest, with_psis) != now
    with pytest.raises(ValueError, match="psis_draws must be an integer >= 0"):
        dataclasses.replace(base, psis_draws=-1)


def test_psis_options_on_the_command_line(tmp_path):
    """--psis-draws is 0 or at least 100; --psis-thetas takes distinct numbers > 0 and only goes
    with --psis-draws; an infinite k is written as inf in the report, not as a dash."""
    import argparse

    from comparisons.cli.reference_scores import psis_draws_arg, settings_from_args, thetas_list_arg
    from comparisons.report.reference_scores import _psis_lines

    assert psis_draws_arg("0") == 0 and psis_draws_arg("100") == 100
    for bad in ("50", "-5", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="^--psis-draws must be 0 "):
            psis_draws_arg(bad)
    assert thetas_list_arg("0.1, 0.01") == (0.1, 0.01)
    for bad in ("0.1,,0.01", "0.1,0.1", "0", "abc", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="^--psis-thetas must be a comma"):
            thetas_list_arg(bad)
    args = argparse.Namespace(reference=str(tmp_path), dataset=("yacht",), splits=(0,),
                              methods=("mc_dropout",), epochs_multiplier=1.0, num_samples=10,
                              gp_iterations=5, seed=0, psis_draws=0, psis_thetas=(0.1,),
                              smoke=False)
    with pytest.raises(ValueError, match="^--psis-thetas: only with --psis-draws N"):
        settings_from_args(args)
    rec = pd.DataFrame([{"method": "mc_dropout", "metric": "psis_k[theta=0.1]",
                         "value": float("inf")},
                        {"method": "mc_dropout", "metric": "psis_ess[theta=0.1]", "value": 1.0}])
    assert "theta=0.1: k = inf, ESS 1" in _psis_lines(rec)[0]
