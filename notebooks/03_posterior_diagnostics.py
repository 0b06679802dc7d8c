# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Posterior diagnostics: MC dropout, an exact GP and an HMC reference
#
# MC dropout is variational inference in a Bayesian network with priors
# $\mathcal{N}(0, l^{-2})$ and Gaussian noise of precision $\tau$. How good is that approximation
# as a *posterior*? This notebook fits, on the 1-D toy problem ($y = x\sin x + \varepsilon$, a gap
# and extrapolation regions; `comparisons.datasets.toy1d`):
#
# * **MC dropout**: the UCI protocol's network (`comparisons.protocols.uci.fit_mc_dropout`), $T$
#   stochastic passes;
# * **standard dropout**: the same network with the masks replaced by their means and
#   predictive $\mathcal{N}(\hat y, 1/\tau)$: a point estimate, so no LOO;
# * **gp_arccos1**: the arc-cosine GP (an infinitely wide ReLU layer) fitted by marginal likelihood;
# * **hmc**: NUTS on the *same* one-hidden-layer network with the dropout model's own prior and
#   noise, mapped onto the standardised scale as $l_\text{eff} = l\,p\,s_y/\sqrt2$,
#   $\tau_s = \tau s_y^2$ (README, "MC dropout vs exact GPs").
#
# and compares them with ArviZ 1.x (arviz-base, arviz-stats, arviz-plots; every method's draws are
# an `xarray.DataTree`): PSIS-LOO and `az.compare` on the training data, posterior
# predictive checks, LOO-PIT, test log-likelihood and coverage, and the distance of every test
# predictive from HMC's (`comparisons.metrics.distances`). All of it is
# `comparisons.experiments.diagnose.run` (the tables and figures: `comparisons.report.diagnose`);
# the command line is `python -m comparisons diagnose`.
#
# **Smoke mode.** `VI_DROPOUT_SMOKE=1` (on by default when `CI` is set) shrinks everything so the
# notebook runs in seconds: the network is barely trained and the NUTS chains are far too short
# (the diagnostics say so). The moderate-size numbers are in `docs/diagnose/`. Set
# `VI_DROPOUT_OUTPUT_DIR` to also save the figures as PNG.

# %%
# %matplotlib inline
import os
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown, display

from comparisons.experiments.diagnose import DiagnoseSettings, run
from comparisons.report.diagnose import (
    diagnose_markdown,
    plot_loo_pit,
    plot_ppc,
    plot_predictive_bands,
)

SMOKE = os.environ.get("VI_DROPOUT_SMOKE", "1" if "CI" in os.environ else "0") == "1"
OUTPUT_DIR = os.environ.get("VI_DROPOUT_OUTPUT_DIR") or None  # e.g. "figures"
torch.set_num_threads(1)  # small problems on a shared CPU

if SMOKE:
    SETTINGS = DiagnoseSettings(dataset="toy1d", split=0, epochs_multiplier=0.02,
                                num_samples=200, max_grid=1, gp_iterations=20, gp_num_draws=200,
                                hmc_chains=2, hmc_warmup=20, hmc_samples=50, hmc_processes=1,
                                hmc_max_tree_depth=3)
else:
    # the committed run of docs/diagnose/toy1d (chains one after another in this kernel)
    SETTINGS = DiagnoseSettings(dataset="toy1d", split=0, epochs_multiplier=10, num_samples=1000,
                                hmc_chains=4, hmc_warmup=300, hmc_samples=300, hmc_processes=1)

T0 = time.perf_counter()
print(f"SMOKE={SMOKE}, settings {SETTINGS}")


def save(fig, name):
    """Save ``fig`` as ``OUTPUT_DIR/name.png`` when an output directory is set."""
    if OUTPUT_DIR:
        Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(OUTPUT_DIR) / f"{name}.png", dpi=90, bbox_inches="tight")


# %% [markdown]
# ## 1. Fit the four methods
#
# Warnings are not hidden: ArviZ's Pareto-$\hat k$ warnings come back as `LOOReliabilityWarning`
# (naming the method and how many points exceed the threshold), and HMC's convergence problems
# (R-hat, ESS, divergences, E-BFMI of the function values $f$) as `HMCDiagnosticsWarning`. They
# are also collected in `result.warnings` and printed under the table.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = run(SETTINGS)
print(f"{result.wall_time_s:.1f} s; {len(result.warnings)} diagnostic warning(s)")

# %% [markdown]
# ## 2. The table
#
# * `elpd_loo` (higher is better) is the PSIS-LOO estimate of the expected log predictive density
#   on the *training* points, with its standard error and the effective number of parameters
#   `p_loo`; `Pareto k bad` counts the points whose importance weights are unreliable.
# * `rank`, `elpd_diff`, `dSE`, `weight` are `az.compare`'s (stacking weights) over the methods
#   with draws. Standard dropout has none: its LOO columns say `n/a (no posterior)`.
# * The test metrics use the moment-matched Gaussian predictive (noise included); `test LL` of MC
#   dropout and HMC is the mixture estimate over their draws.
# * The distances are each method's test predictive against HMC's, averaged over the test grid.

# %%
display(Markdown(diagnose_markdown(result.records, result.warnings)))

# %% [markdown]
# ## 3. Predictive bands
#
# Every method's test predictive mean $\pm 2$ sd over $x$ (training intervals shaded). HMC with
# the dropout model's nearly flat prior ($1/l_\text{eff} \approx 140$ per weight) is the reference
# MC dropout should approximate; in smoke mode its chains have not mixed.

# %%
fig, ax = plt.subplots(figsize=(8, 4.5))
plot_predictive_bands(result, ax)
fig.tight_layout()
save(fig, "bands")
plt.show()

# %% [markdown]
# ## 4. Posterior predictive checks and LOO-PIT
#
# Top: the density of the observed training targets against replicated data sets from each
# posterior predictive (arviz-plots' `plot_ppc_dist`). Bottom: LOO-PIT (`plot_loo_pit`), the ECDF
# of $P(\tilde y_n \le y_n \mid y_{-n})$ minus the uniform CDF, with the p-value of
# arviz-stats' uniformity test at level $\alpha = 0.01$ (`method="pot_c"`); a small p-value means
# the leave-one-out predictive is miscalibrated (an S shape: too narrow; an inverted S: too wide).

# %%
methods = [m for m, out in result.methods.items() if out.idata_train is not None]
fig, axes = plt.subplots(2, len(methods), figsize=(4.2 * len(methods), 7), squeeze=False)
for j, m in enumerate(methods):
    plot_ppc(result, m, axes[0, j])
    plot_loo_pit(result, m, axes[1, j])
fig.tight_layout()
save(fig, "ppc_loo_pit")
plt.show()

# %% [markdown]
# ## 5. The same objects in ArviZ 1.x directly
#
# Every method's draws are an `xarray.DataTree` with the groups ArviZ expects (`posterior` with
# `f`, `posterior_predictive`, `log_likelihood`, `observed_data`, `constant_data`, and
# `sample_stats` with `diverging` for HMC), so ArviZ's own functions apply to them as they are.
# Intervals are asked for explicitly: ArviZ 1.x's default is the 89% equal-tailed interval
# (ArviZ 0.x: the 94% HDI), and a report that leaves it to the default changes silently.

# %%
import arviz as az
import arviz_plots as azp

tree = result.methods["mc_dropout"].idata_train
print(sorted(tree.children))
loos = {m: out.loo for m, out in result.methods.items() if out.loo is not None}
for m, loo in loos.items():
    print(f"{m}: elpd_loo {loo.elpd:.2f} (SE {loo.se:.2f}), p_loo {loo.p:.2f}")
if len(loos) > 1:
    display(az.compare(loos, method="stacking", round_to="none"))
display(az.summary(result.methods["hmc"].idata_train, var_names=["f"], ci_kind="eti",
                   ci_prob=0.89, round_to="none").head())
pc = azp.plot_ppc_dist(tree, kind="kde", num_samples=50)  # a PlotCollection with its own figure
plt.show()

# %% [markdown]
# ## 6. A converged reference next to the methods
#
# The HMC above uses the dropout model's own, nearly flat prior, and its chains do not converge
# (docs/experiments/hmc_reference.md measures what that would take). The toolkit's *converged*
# references use a proper prior shared by every method, $\mathcal{N}(0, l^{-2})$ with $l = 1$ on
# the standardised scale, and are committed under `docs/reference/hmc` (made by
# `python -m comparisons hmc-reference`, NumPyro's NUTS). Loading one with `load_reference`
# checks its SHA-256 and settings; `require_converged` refuses it unless every test point has
# R-hat $\le 1.01$, bulk and tail ESS $\ge 400$ and no chain diverged.
#
# `comparisons.experiments.reference_scores.run` then fits the methods on the same split under
# the same prior (`python -m comparisons reference-scores` is the command line) and scores each
# by its distance from the reference's predictive: total variation, W2, the mean difference in
# HMC sds (`smd`), the variance ratio, and `hmc_mass_95`, the reference's mass inside the
# method's 95% interval (0.95 when the method matches HMC). In smoke mode the methods are barely
# trained; the committed scores of every method on every reference are in
# `docs/reference/scores`.
#
# `psis_draws` adds the diagnostic of the variational approximation itself (Yao et al. 2018):
# with $\theta > 0$ MC dropout's $q(\mathbf{W})$ has an exact density, so its draws give
# importance ratios $p(\mathbf{y}, \mathbf{W}) / q(\mathbf{W})$ against the posterior; their
# Pareto $\hat k$ says whether $q$ covers the posterior ($\hat k \ge 0.7$: it does not), and
# arviz-stats' `loo_approximate_posterior` reweights the same draws into the PSIS-LOO of the
# posterior, printed beside the plain PSIS-LOO that takes $q$ for the posterior.

# %%
import comparisons
from comparisons.datasets.splits import load_split
from comparisons.experiments.reference_scores import ScoreSettings
from comparisons.experiments.reference_scores import run as score_run
from comparisons.reference.reference_file import (
    convergence_summary,
    load_reference,
    require_converged,
)
from comparisons.report.reference_scores import plot_toy_reference_bands, report_markdown

REFERENCE_DIR = Path(os.environ.get("VI_DROPOUT_REFERENCE_DIR") or
                     Path(comparisons.__file__).resolve().parents[1] / "docs" / "reference" / "hmc")
reference, manifest = load_reference(REFERENCE_DIR / "toy1d" / "split-00.nc",
                                     expect={"dataset": "toy1d", "split": 0,
                                             "prior_length_scale": 1.0})
# the gate, recomputed from the draws in the file (raises ReferenceNotConverged otherwise)
gate = require_converged(convergence_summary(reference), "toy1d split 0 reference")
print(f"{manifest['prior']}; tau_s = {manifest['tau_standardized']:.4g}; "
      f"{reference.posterior.sizes['chain']} chains x {reference.posterior.sizes['draw']} "
      f"draws kept; max R-hat {gate.max_r_hat:.4f}, min bulk / tail ESS "
      f"{gate.min_ess_bulk:.0f} / {gate.min_ess_tail:.0f}, {gate.divergences} divergences")

if SMOKE:
    SCORE_SETTINGS = ScoreSettings(reference_dir=str(REFERENCE_DIR), datasets=("toy1d",),
                                   methods=("mc_dropout", "gp_arccos1_prior", "gp_se"),
                                   epochs_multiplier=0.02, num_samples=200, gp_iterations=20,
                                   psis_draws=200, psis_thetas=(0.1,))
else:
    SCORE_SETTINGS = ScoreSettings(reference_dir=str(REFERENCE_DIR), datasets=("toy1d",),
                                   methods=("mc_dropout", "concrete_dropout", "deep_ensemble",
                                            "laplace", "gp_arccos1_prior", "gp_se"),
                                   psis_draws=4000)
scores = score_run(SCORE_SETTINGS)
display(Markdown(report_markdown(pd.DataFrame(scores.records), scores.references)))

# %%
toy = load_split("toy1d", 0, toy_num_train=manifest["settings"]["toy_num_train"]).data
fig, ax = plt.subplots(figsize=(8, 4.5))
plot_toy_reference_bands(scores.predictives[("toy1d", 0)], toy, ax)
fig.tight_layout()
save(fig, "reference_bands")
plt.show()

# %%
print(f"total {time.perf_counter() - T0:.1f} s (SMOKE={SMOKE})")
