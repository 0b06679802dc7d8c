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
# # Extrapolating the Mauna Loa CO$_2$ record (the paper's Figure 2)
#
# Gal & Ghahramani (2016) fit the weekly CO$_2$ record of Mauna Loa on its earlier part and
# predict far beyond its end. The question is not *what* the models predict out there (all of
# them are wrong in some way) but whether they **know** that they do not know:
#
# - (a) **standard dropout** (weights scaled by `keep_prob`, "weight averaging") gives one
#   confident curve;
# - (b) an exact **GP with a squared-exponential kernel** reverts to its prior: mean 0 (the
#   training mean) and variance `outputscale + noise`;
# - (c) **MC dropout with ReLU**: the predictive spread grows away from the data;
# - (d) **MC dropout with tanh**: the spread grows far less (tanh saturates, so every hidden
#   unit, and hence the output, is bounded);
# - (e) an exact **GP with the arc-cosine kernel** (an infinitely wide one-hidden-layer ReLU
#   network): linear extrapolation with slowly growing uncertainty.
#
# MC dropout's predictive distribution uses $T$ function draws $\hat{\mathbf{W}}_t \sim q(\mathbf{W})$
# (one dropout mask per layer and draw, shared by all inputs):
#
# $$
# \mathbb{E}[y^*] \approx \frac1T\sum_{t=1}^T f^{\hat{\mathbf{W}}_t}(x^*), \qquad
# \operatorname{Var}[y^*] \approx \tau^{-1} + \frac1T\sum_{t=1}^T f^{\hat{\mathbf{W}}_t}(x^*)^2
#   - \mathbb{E}[y^*]^2 .
# $$
#
# The networks are the paper's: 4 hidden layers of 1024 units, `keep_prob` 0.8
# (a drop rate of 0.2) on every hidden layer (the 1-D time input is not dropped). Training them
# for $10^6$ steps (our paper-like setting, `comparisons.experiments.mauna_loa.PAPER_LIKE_SETTINGS`) takes
# about half a day per network on one CPU thread (0.045-0.13 s per step measured), so the
# default here is short (a few minutes in all) and the picture is a *short-training* version of
# Figure 2. The committed figure on the Mauna Loa page comes from networks trained until their
# loss stopped improving (`make mauna-loa-long`: ReLU 220,000 steps, tanh 100,000).
#
# **Smoke mode.** `VI_DROPOUT_SMOKE=1` (on by default when `CI` is set) shrinks the networks,
# the number of steps and the data so the notebook runs in seconds; the conclusions about the
# GPs still hold, the network panels are then just toys. Set `VI_DROPOUT_OUTPUT_DIR` to also
# save the figure as PNG.

# %%
# %matplotlib inline
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from comparisons.datasets.mauna_loa import load_mauna_loa
from comparisons.experiments.mauna_loa import (
    PAPER_LIKE_SETTINGS,
    MaunaLoaSettings,
)
from comparisons.experiments.mauna_loa import run as run_mauna_loa
from comparisons.report.mauna_loa import plot_mauna_loa, records_markdown

SMOKE = os.environ.get("VI_DROPOUT_SMOKE", "1" if "CI" in os.environ else "0") == "1"
OUTPUT_DIR = os.environ.get("VI_DROPOUT_OUTPUT_DIR") or None  # e.g. "figures"
torch.set_num_threads(1)  # shared CPUs: one thread is the measured setting

if SMOKE:
    SETTINGS = MaunaLoaSettings(iterations=40, num_samples=32, hidden_layers=2, hidden_units=32,
                            gp_iterations=30, data_stride=8, gp_stride=1)
else:
    SETTINGS = MaunaLoaSettings()  # 4 x 1024, 500 steps, T = 50: a few minutes on one thread
print(f"SMOKE={SMOKE}, networks {SETTINGS.hidden_layers} x {SETTINGS.hidden_units}, "
      f"keep_prob {SETTINGS.keep_prob:g}, "
      f"{SETTINGS.iterations} steps, T = {SETTINGS.num_samples}")
print(f"paper-like setting: {PAPER_LIKE_SETTINGS.iterations:,} steps, "
      f"T = {PAPER_LIKE_SETTINGS.num_samples}")


def save(fig, name):
    """Save ``fig`` as ``OUTPUT_DIR/name.png`` when an output directory is set."""
    if OUTPUT_DIR:
        Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(OUTPUT_DIR) / f"{name}.png", dpi=100, bbox_inches="tight")


# %% [markdown]
# ## 1. The data and the cut
#
# `statsmodels.datasets.co2`: weekly averages from March 1958 to December 2001 (2284 weeks, 59
# of them missing and filled by linear interpolation in time). The first 70% (to late 1988)
# are the training data; time and CO$_2$ are standardised with the training part's mean and
# standard deviation. Predictions run as far beyond the cut as the training span (to 2019).

# %%
data = load_mauna_loa(SETTINGS.train_fraction, SETTINGS.extrapolation, SETTINGS.data_stride)
print(f"{len(data.time)} weeks (stride {data.stride}), {int(data.interpolated.sum())} "
      f"interpolated; training {data.time[0]:.2f}-{data.train_end:.2f} ({data.num_train} weeks), "
      f"held out {data.num_heldout} weeks to {data.time[-1]:.2f}; horizon {data.horizon:.2f}")
print(f"standardisation: time {data.time_mean:.2f} +- {data.time_std:.2f} years, "
      f"CO2 {data.co2_mean:.2f} +- {data.co2_std:.2f} ppm")

# %% [markdown]
# ## 2. Fit all five models and predict to the horizon

# %%
t0 = time.perf_counter()
result = run_mauna_loa(SETTINGS, data=data, log=print)
print(f"total {time.perf_counter() - t0:.1f} s")
display(Markdown(records_markdown(result.records)))

# %% [markdown]
# ## 3. Figure 2 (a)-(d) and the arc-cosine GP (e)
#
# Red: training data; grey: held-out weeks; blue: predictive mean with $\pm 1$ and $\pm 2$
# standard deviations (observation noise included); dashed: the end of the training data.

# %%
fig = plot_mauna_loa(result, plt.figure(figsize=(9, 13)))
save(fig, "04_mauna_loa")
plt.show()

# %% [markdown]
# ## 4. The SE GP far from the data is its prior
#
# At the horizon the SE kernel between the query and every training input is
# $\exp(-d^2 / 2\ell^2) \approx 0$, so the predictive distribution is the prior's:
# mean $0$ (the training mean in ppm) and sd $\sqrt{\text{outputscale} + \text{noise}}$ (times the
# CO$_2$ standard deviation). The check below is the same as in the tests.

# %%
gp = result.predictions["gp_se"]
prior_sd = np.sqrt(gp.info["outputscale"] + gp.info["noise"]) * data.co2_std
gap = data.standardize_time(data.horizon) - data.standardize_time(data.train_end)
print(f"lengthscale {gp.info['lengthscale']:.3g} (standardised time), horizon "
      f"{gap / gp.info['lengthscale']:.1f} lengthscales past the data")
print(f"sd at the horizon {gp.sd[-1]:.4f} ppm vs prior sd {prior_sd:.4f} ppm; "
      f"mean {gp.mean[-1]:.3f} vs training mean {data.co2_mean:.3f} ppm")
assert abs(gp.sd[-1] - prior_sd) < 1e-6 * prior_sd

# %% [markdown]
# ## 5. How the uncertainty grows
#
# Predictive sd against time for the four models that have one; the dashed line is the end
# of the training data.

# %%
fig, ax = plt.subplots(figsize=(8, 3.5))
for pred in result.predictions.values():
    if pred.sd is not None:
        ax.plot(pred.time, pred.sd, label=pred.label)
ax.axvline(data.train_end, color="k", ls="--", lw=0.8)
ax.set_xlabel("year")
ax.set_ylabel("predictive sd (ppm)")
ax.set_yscale("log")
ax.legend(fontsize="small")
save(fig, "04_mauna_loa_sd")
plt.show()

# %% [markdown]
# **Reading the result.** The SE GP's uncertainty saturates at its prior level within a few
# lengthscales of the data, as the paper shows. The ReLU MC dropout network's spread grows with
# the distance from the data; the tanh network's grows far less. Standard dropout gives a single
# curve and no way to tell that its extrapolation is a guess. With the short default training
# the networks fit the trend but not the seasonal cycle (the SE GP, with a lengthscale of a few
# months, does). Even the networks trained to the stopping rule leave about half of the annual
# cycle in their residual (docs/experiments/mauna_loa.md).
