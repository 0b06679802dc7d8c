"""``split_predictive`` of every learned / baseline protocol is the predictive its cells score:
the cell's RMSE and 95% coverage recomputed from it (same seeds, float64 where the protocol
allows), and the moment matching of a mixture against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comparisons.datasets.uci import load_uci, standardize
from comparisons.metrics.distances import interval_coverage
from comparisons.protocols import uci_concrete, uci_deep_ensemble, uci_laplace, uci_mfvi
from comparisons.protocols.learned import mixture_predictive, samples_predictive

CASES = {
    "concrete_dropout": (uci_concrete, uci_concrete.ConcreteUCISettings(
        epochs_multiplier=0.1, num_samples=50, dtype="float64"), uci_concrete.concrete_uci_cells,
        uci_concrete.run_concrete_uci_cells),
    "mfvi": (uci_mfvi, uci_mfvi.MFVIUCISettings(epochs_multiplier=0.1, num_samples=50,
                                              dtype="float64"),
             uci_mfvi.mfvi_uci_cells, uci_mfvi.run_mfvi_uci_cells),
    "deep_ensemble": (uci_deep_ensemble, uci_deep_ensemble.DeepEnsembleUCISettings(
        ensemble_size=3, epochs=10, lrs=(0.01, 0.001), dtype="float64"),
        uci_deep_ensemble.deep_ensemble_uci_cells, uci_deep_ensemble.run_deep_ensemble_uci_cells),
    "laplace_kfac": (uci_laplace, uci_laplace.LaplaceUCISettings(epochs_multiplier=0.1,
                                                               marglik_steps=50),
                     uci_laplace.laplace_uci_cells, uci_laplace.run_laplace_uci_cell),
}


@pytest.mark.parametrize("method", list(CASES))
def test_split_predictive_is_what_the_cell_scores(method):
    module, config, make_cells, run_cells = CASES[method]
    raw = load_uci("yacht", 1)
    per_method = method in ("concrete_dropout", "laplace_kfac")  # protocols of two methods
    cell = (make_cells(["yacht"], "1", config, method) if per_method
            else make_cells(["yacht"], "1", config))[0]
    records = {r["metric"]: r["value"] for r in run_cells(cell)}
    pred = module.split_predictive(raw, config, method)
    y = raw.y_test[:, 0]
    assert pred.mean.shape == pred.var.shape == y.shape and (pred.var > 0).all()
    assert float(np.sqrt(np.mean((y - pred.mean) ** 2))) == pytest.approx(records["rmse"],
                                                                          rel=1e-9)
    assert interval_coverage(pred.mean, pred.var, y) == records["coverage_95"]
    with pytest.raises(ValueError, match="method must be one of"):
        module.split_predictive(raw, config, "mc_dropout")


def test_moment_matching_of_samples_and_mixtures():
    std = standardize(load_uci("yacht", 0))
    g = torch.Generator().manual_seed(0)
    n = std.x_test.shape[0]
    samples = torch.randn(200, n, 1, generator=g, dtype=torch.float64)
    pred = samples_predictive(samples, std, tau=4.0)
    s = float(std.y_std)
    np.testing.assert_allclose(pred.mean, float(std.y_mean) + s * samples[..., 0].mean(0).numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(pred.var, 0.25 + s**2 * samples[..., 0].numpy().var(0),
                               rtol=1e-12)
    means = torch.randn(3, n, 1, generator=g, dtype=torch.float64)
    variances = torch.rand(3, n, 1, generator=g, dtype=torch.float64) + 0.1
    mix = mixture_predictive(means, variances, std)
    m, v = means[..., 0].numpy(), variances[..., 0].numpy()
    np.testing.assert_allclose(mix.var, s**2 * (v.mean(0) + (m**2).mean(0) - m.mean(0) ** 2),
                               rtol=1e-10)


def test_registered_split_predictives_take_the_runs_settings_the_protocol_has():
    """reference-scores scores every registered method through its entry's split predictive:
    each built-in baseline gets the run's epochs, samples, seed and prior length-scale where its
    settings have them, exactly the configurations reference-scores built by hand before."""
    from comparisons.protocols.registry import RunSettings, get_method
    from comparisons.protocols.uci_concrete import ConcreteUCISettings
    from comparisons.protocols.uci_deep_ensemble import DeepEnsembleUCISettings
    from comparisons.protocols.uci_mfvi import MFVIUCISettings

    run = RunSettings(epochs_multiplier=2.0, num_samples=5, seed=3, prior_length_scale=0.7)
    want = {
        "concrete_dropout": ConcreteUCISettings(epochs_multiplier=2.0, num_samples=5,
                                                prior_length_scale=0.7, seed=3),
        "full_elbo": ConcreteUCISettings(epochs_multiplier=2.0, num_samples=5,
                                         prior_length_scale=0.7, seed=3),
        "mfvi": MFVIUCISettings(epochs_multiplier=2.0, num_samples=5, prior_length_scale=0.7,
                                seed=3),
        "deep_ensemble": DeepEnsembleUCISettings(seed=3),
    }
    for method, config in want.items():
        predictive = get_method(method).split_predictive
        assert predictive.method == method and predictive.config(run) == config, method
    # without a prior length-scale the protocol keeps its own
    assert get_method("mfvi").split_predictive.config(RunSettings()).prior_length_scale == 1e-2
