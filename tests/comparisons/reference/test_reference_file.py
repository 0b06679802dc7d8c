"""Reference files: the convergence gate passes well-mixed chains and fails on R-hat, ESS and
divergences; reference files round-trip with a checked checksum and manifest; thin_draws keeps
every chain within the draw budget."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import arviz as az
import numpy as np
import pytest

from comparisons.inference_data.netcdf import read_datatree, write_datatree
from comparisons.reference.reference_file import (
    MANIFEST_ATTR,
    ConvergenceThresholds,
    ReferenceFileError,
    ReferenceMismatch,
    ReferenceNotConverged,
    convergence_summary,
    draws_to_converge,
    load_reference,
    manifest_checksum,
    manifest_path,
    require_converged,
    save_reference,
    thin_draws,
)

ROOT = Path(__file__).resolve().parents[3]
CHAINS, DRAWS, POINTS = 4, 1000, 5
MANIFEST = {"dataset": "boston", "split": 3, "prior_length_scale": 0.01, "tau": 10.0,
            "widths": (13, 50, 1), "sampler": {"name": "nuts", "num_warmup": 1000}}


def _idata(f, diverging=None, *, stats=True, group="posterior"):
    chains, draws = f.shape[:2]
    if diverging is None:
        diverging = np.zeros((chains, draws), dtype=bool)
    kwargs = {group: {"f": f}}
    if stats:
        kwargs["sample_stats"] = {"diverging": diverging}
    return az.from_dict({**kwargs, "observed_data": {"y": np.zeros(f.shape[2])}})


def _iid(seed=0, chains=CHAINS, draws=DRAWS, points=POINTS):
    return np.random.default_rng(seed).standard_normal((chains, draws, points))


def _ar1(phi, seed=0):
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((CHAINS, DRAWS, POINTS)) * np.sqrt(1 - phi**2)
    f = np.empty_like(eps)
    f[:, 0] = rng.standard_normal((CHAINS, POINTS))
    for t in range(1, DRAWS):
        f[:, t] = phi * f[:, t - 1] + eps[:, t]
    return f


# --------------------------------------------------------------------------- the gate
def test_well_mixed_chains_pass():
    report = convergence_summary(_idata(_iid()))
    assert report.converged and report.reasons == []
    assert report.r_hat.shape == report.ess_bulk.shape == report.ess_tail.shape == (POINTS,)
    assert report.max_r_hat < 1.01 and report.min_ess_bulk > 400 and report.min_ess_tail > 400
    assert report.divergences == 0 and report.group == "posterior"
    assert (report.num_chains, report.num_draws) == (CHAINS, DRAWS)
    require_converged(report, "iid draws")  # no error


def test_f_in_posterior_predictive_is_found():
    report = convergence_summary(_idata(_iid(), group="posterior_predictive"))
    assert report.group == "posterior_predictive" and report.converged


def test_chains_with_different_means_fail_on_r_hat():
    f = _iid() + np.arange(CHAINS)[:, None, None]
    report = convergence_summary(_idata(f))
    assert not report.converged
    assert any(r.startswith("max R-hat") and "> 1.01" in r and f"of {POINTS} test points" in r
               for r in report.reasons), report.reasons
    assert report.max_r_hat > 1.01


def test_autocorrelated_draws_fail_on_ess():
    report = convergence_summary(_idata(_ar1(0.99)))
    assert not report.converged
    assert any("bulk ESS" in r and "< 400" in r for r in report.reasons), report.reasons
    assert report.min_ess_bulk < 400


def test_a_divergence_fails():
    div = np.zeros((CHAINS, DRAWS), dtype=bool)
    div[2, 17] = True
    report = convergence_summary(_idata(_iid(), div))
    assert not report.converged and report.divergences == 1
    assert report.reasons == ["1 divergent transition"]
    lenient = convergence_summary(_idata(_iid(), div), thresholds=ConvergenceThresholds(
        max_divergences=1))
    assert lenient.converged


def test_one_chain_raises():
    with pytest.raises(ValueError, match="2 chains"):
        convergence_summary(_idata(_iid(chains=1)))


def test_missing_diverging_raises():
    with pytest.raises(ValueError, match="diverging"):
        convergence_summary(_idata(_iid(), stats=False))


def test_missing_var_names_the_groups():
    with pytest.raises(ValueError, match="'g'.*posterior.*observed_data"):
        convergence_summary(_idata(_iid()), var_name="g")


def test_bad_thresholds_raise():
    with pytest.raises(ValueError, match="r_hat_max"):
        ConvergenceThresholds(r_hat_max=0.9)
    with pytest.raises(ValueError, match="max_divergences"):
        ConvergenceThresholds(max_divergences=-1)


def test_require_converged_raises_with_the_reasons():
    report = convergence_summary(_idata(_iid() + np.arange(CHAINS)[:, None, None]))
    with pytest.raises(ReferenceNotConverged, match="boston split 3") as info:
        require_converged(report, "NUTS reference boston split 3")
    assert isinstance(info.value, ValueError)
    for reason in report.reasons:
        assert reason in str(info.value)


# --------------------------------------------------------------------- reference files
def _saved(tmp_path, f=None):
    idata = _idata(_iid() if f is None else f)
    path = save_reference(idata, tmp_path / "refs" / "boston-3.nc", manifest=MANIFEST)
    return idata, path


def test_save_load_round_trip(tmp_path):
    idata, path = _saved(tmp_path)
    mpath = manifest_path(path)
    assert mpath.name == "boston-3.nc.manifest.json"
    recorded = json.loads(mpath.read_text())
    assert recorded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert recorded["size_bytes"] == path.stat().st_size
    assert recorded["convergence"]["converged"] is True
    assert recorded["convergence"]["divergences"] == 0
    assert recorded["convergence"]["max_r_hat"] < 1.01
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]

    loaded, manifest = load_reference(path, expect={"dataset": "boston", "split": 3,
                                                    "prior_length_scale": 0.01,
                                                    "widths": (13, 50, 1)})
    assert manifest == recorded
    np.testing.assert_array_equal(loaded.posterior["f"].values, idata.posterior["f"].values)
    np.testing.assert_array_equal(loaded.sample_stats["diverging"].values,
                                  idata.sample_stats["diverging"].values)
    assert set(loaded.children) == set(idata.children)


def test_unconverged_reference_is_saved_with_its_reasons(tmp_path):
    _, path = _saved(tmp_path, _iid() + np.arange(CHAINS)[:, None, None])
    conv = json.loads(manifest_path(path).read_text())["convergence"]
    assert conv["converged"] is False and conv["reasons"][0].startswith("max R-hat")


def test_flipped_byte_is_a_file_error(tmp_path):
    _, path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ReferenceFileError, match="checksum .* differs: the file was changed"):
        load_reference(path, expect={})


def test_truncated_file_is_a_file_error(tmp_path):
    _, path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ReferenceFileError, match="truncated"):
        load_reference(path, expect={})


def test_other_prior_is_a_mismatch_naming_key_and_values(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ReferenceMismatch) as info:
        load_reference(path, expect={"prior_length_scale": 1.0, "dataset": "boston",
                                     "num_layers": 2})
    msg = str(info.value)
    assert "prior_length_scale: expected 1.0, the reference has 0.01" in msg
    assert "num_layers: expected 2, the reference does not record it" in msg
    assert "dataset" not in msg
    assert isinstance(info.value, ValueError)


def test_nested_settings_mismatch_names_each_differing_setting(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ReferenceMismatch) as info:
        load_reference(path, expect={"sampler": {"name": "nuts", "num_warmup": 500,
                                                 "dense_mass": False}})
    msg = str(info.value)
    assert "sampler.num_warmup: expected 500, the reference has 1000" in msg
    assert "sampler.dense_mass: expected False, the reference does not record it" in msg
    assert "name" not in msg
    with pytest.raises(ReferenceMismatch, match=r"sampler\.num_warmup: not expected, the "
                                                r"reference has 1000"):
        load_reference(path, expect={"sampler": {"name": "nuts"}})
    load_reference(path, expect={"sampler": {"name": "nuts", "num_warmup": 1000}})


def test_missing_manifest_or_file_is_a_file_error(tmp_path):
    _, path = _saved(tmp_path)
    manifest_path(path).unlink()
    with pytest.raises(ReferenceFileError, match="manifest .*manifest.json is missing"):
        load_reference(path, expect={})
    with pytest.raises(ReferenceFileError, match="missing"):
        load_reference(tmp_path / "nope.nc", expect={})


def test_missing_nc_is_a_file_error(tmp_path):
    _, path = _saved(tmp_path)
    path.unlink()
    with pytest.raises(ReferenceFileError, match="reference file .*boston-3.nc is missing"):
        load_reference(path, expect={})


def test_reserved_manifest_key_raises(tmp_path):
    with pytest.raises(ValueError, match="sha256"):
        save_reference(_idata(_iid()), tmp_path / "r.nc", manifest={"sha256": "x"})


def test_saved_file_is_compressed(tmp_path):
    f = np.ones((CHAINS, DRAWS, 50))  # constant: compresses well (the gate fails, saved anyway)
    idata = _idata(f)
    path = save_reference(idata, tmp_path / "c.nc", manifest={})
    conv = json.loads(manifest_path(path).read_text())["convergence"]
    assert conv["converged"] is False and conv["max_r_hat"] is None
    assert "R-hat is not finite at 50 of 50 test points" in conv["reasons"]
    plain = tmp_path / "plain.nc"
    write_datatree(idata, plain)  # compress=False
    assert path.stat().st_size < plain.stat().st_size / 2
    loaded, _ = load_reference(path, expect={})
    assert loaded.posterior["f"].encoding.get("zlib") is True or \
        loaded.posterior["f"].encoding.get("compression") in ("gzip", "zlib")


# --------------------------------------------------------------------------- thinning
def test_thin_draws_bounds_draws_and_keeps_chains():
    idata = _idata(_iid(draws=1003))
    thinned = thin_draws(idata, max_draws=1000)
    for group in ("posterior", "sample_stats"):
        ds = getattr(thinned, group)
        assert ds.sizes["chain"] == CHAINS
        assert ds.sizes["chain"] * ds.sizes["draw"] <= 1000
        assert ds.sizes["draw"] >= 1000 // CHAINS // 2  # not over-thinned
    np.testing.assert_array_equal(thinned.posterior["f"].values[:, 0],
                                  idata.posterior["f"].values[:, 0])
    assert thinned.observed_data.equals(idata.observed_data)
    same = thin_draws(idata, max_draws=CHAINS * 1003)
    assert same.posterior.sizes["draw"] == 1003
    with pytest.raises(ValueError, match="chains"):
        thin_draws(idata, max_draws=CHAINS - 1)


def test_draws_to_converge_is_the_first_passing_prefix():
    rng = np.random.default_rng(3)
    f = rng.standard_normal((4, 600, 3))
    idata = az.from_dict({"posterior": {"f": f},
                         "sample_stats": {"diverging": np.zeros((4, 600), dtype=bool)}})
    k = draws_to_converge(idata, step=50)
    # i.i.d. draws: bulk/tail ESS ~ 4 k, so the gate (ESS >= 400) passes from about k = 100
    assert k is not None and 100 <= k <= 300
    assert convergence_summary(idata.isel(draw=slice(0, k))).converged
    assert not convergence_summary(idata.isel(draw=slice(0, k - 50))).converged
    f[0] += 2.0  # one chain elsewhere: never converges
    stuck = az.from_dict({"posterior": {"f": f},
                         "sample_stats": {"diverging": np.zeros((4, 600), dtype=bool)}})
    assert draws_to_converge(stuck, step=100) is None
    with pytest.raises(ValueError, match="step must be an integer >= 4"):
        draws_to_converge(idata, step=2)


# --------------------------------------------------------------------- manifests bound to files
@pytest.mark.parametrize("key, value, named", [
    ("prior_length_scale", 0.02, "prior_length_scale: saved 0.01, now 0.02"),
    ("seed", 7, "seed: saved <absent>, now 7"),
    ("dataset", None, "dataset: saved \"boston\", now <absent>"),
    ("sampler", {"name": "nuts", "num_warmup": 999}, "sampler.num_warmup: saved 1000, now 999"),
])
def test_an_edited_manifest_is_refused_naming_the_key(tmp_path, key, value, named):
    """Editing a manifest value (and even recomputing its own checksum) is refused: the .nc
    file, covered by its checksum, holds the saved copy; the message names the edited key."""
    _, path = _saved(tmp_path)
    mpath = manifest_path(path)
    doc = json.loads(mpath.read_text())
    if value is None:
        del doc[key]
    else:
        doc[key] = value
    mpath.write_text(json.dumps(doc))
    with pytest.raises(ReferenceFileError, match="was edited after it was saved") as info:
        load_reference(path, expect={})
    assert named in str(info.value)
    doc["manifest_sha256"] = manifest_checksum(doc)  # a consistent-looking forgery
    mpath.write_text(json.dumps(doc))
    with pytest.raises(ReferenceFileError, match=named.replace("(", r"\(")):
        load_reference(path, expect={})


def test_manifest_checksum_binds_files_without_a_saved_copy(tmp_path):
    """Files saved before the copy existed (the committed references) are bound by
    manifest_sha256 alone: an edit is refused, a manifest without it too."""
    idata, path = _saved(tmp_path)
    mpath = manifest_path(path)
    doc = json.loads(mpath.read_text())
    assert doc["manifest_sha256"] == manifest_checksum(doc) and doc["manifest_format"] == 2
    assert MANIFEST_ATTR not in idata.posterior.attrs  # the caller's object is not changed
    stripped = read_datatree(path)
    del stripped.posterior.attrs[MANIFEST_ATTR]
    write_datatree(stripped, tmp_path / "stripped.nc")
    (tmp_path / "stripped.nc").replace(path)
    doc["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    doc.pop("size_bytes")
    doc["manifest_sha256"] = manifest_checksum(doc)
    mpath.write_text(json.dumps(doc))
    load_reference(path, expect={"dataset": "boston"})  # bound by its checksum: loads
    mpath.write_text(json.dumps(dict(doc, tau=41.0)))
    with pytest.raises(ReferenceFileError, match="does not match its manifest_sha256"):
        load_reference(path, expect={})
    mpath.write_text(json.dumps({k: v for k, v in doc.items() if k != "manifest_sha256"}))
    with pytest.raises(ReferenceFileError, match="records no manifest_sha256"):
        load_reference(path, expect={})


def test_committed_references_are_bound():
    """Every reference under docs/reference/hmc loads with its manifest checked."""
    files = sorted((ROOT / "docs" / "reference" / "hmc").glob("*/split-*.nc"))
    assert len(files) == 6
    for path in files:
        _, manifest = load_reference(path, expect={})
        assert manifest["manifest_sha256"] == manifest_checksum(manifest)
