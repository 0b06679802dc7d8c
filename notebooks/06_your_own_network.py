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
# # Bring your own network: a CNN written the ordinary way, trained as a Bayesian approximation
#
# Gal & Ghahramani's result is about *any* network with dropout in front of its weight layers:
# training it is variational inference with the MC dropout family. This notebook takes a small
# CNN written as one usually writes one -- `nn.Conv2d`, `nn.Dropout2d`, `nn.Linear`,
# `nn.Dropout` and a custom `forward` with functional ReLUs and pooling -- and
#
# 1. finds the layers whose weights the family covers (`vi_dropout.conversion.find_covered_layers`,
#    read from the real call graph by `torch.fx`);
# 2. turns it into a Pyro model and guide (`vi_dropout.models.ModuleBNN`, `DropoutGuide`) and
#    trains it with `pyro.infer.SVI` and the per-example ELBO
#    (`vi_dropout.infer.per_example_elbo.PerExampleDropoutELBO`: one weight draw per example, as dropout
#    draws one mask per example);
# 3. predicts with `pyro.infer.Predictive` and, after `guide.load_into(net)`, with plain MC dropout
#    through the network's own dropout modules;
# 4. opens the predictive in ArviZ.
#
# Data: scikit-learn's 8x8 digits (no download). `keep_prob` is the probability that a unit is
# KEPT; torch's `p` (here `drop_rate`) is the probability that it is dropped:
# `keep_prob = 1 - drop_rate`.
#
# **Smoke mode.** Set `VI_DROPOUT_SMOKE=1` (on by default when `CI` is set) for a few epochs and
# a few samples; the numbers are then those of an under-trained network. Set
# `VI_DROPOUT_OUTPUT_DIR` (or `OUTPUT_DIR` below) to also save every figure as PNG.

# %%
# %matplotlib inline
import math
import os
import time
from pathlib import Path

import arviz as az
import arviz_plots as azp
import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
import torch.nn.functional as F
from torch import nn

from comparisons.datasets.digits import load_digits_split
from comparisons.metrics.calibration import calibration_records
from comparisons.report.plot_collection import plot_collection_on
from vi_dropout.conversion import find_covered_layers
from vi_dropout.guides import DropoutGuide
from vi_dropout.infer.per_example_elbo import PerExampleDropoutELBO
from vi_dropout.models import ModuleBNN
from vi_dropout.summaries import classification_summary

SMOKE = os.environ.get("VI_DROPOUT_SMOKE", "1" if "CI" in os.environ else "0") == "1"
OUTPUT_DIR = os.environ.get("VI_DROPOUT_OUTPUT_DIR") or None  # e.g. "figures"
SEED = 0
if SMOKE:
    torch.set_num_threads(1)  # tiny problem: extra threads only add overhead on a shared CPU
    EPOCHS, T = 3, 100  # PSIS-LOO (below) needs 100 draws at least
else:
    EPOCHS, T = 40, 100
THETA = 1e-3  # the jitter's standard deviation around the means (small: the dropout limit)
T0 = time.perf_counter()
print(f"SMOKE={SMOKE}, epochs={EPOCHS}, T={T}, theta={THETA:g}, seed={SEED}")


def save(fig, name):
    """Save ``fig`` as ``OUTPUT_DIR/name.png`` when an output directory is set."""
    if OUTPUT_DIR:
        Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(OUTPUT_DIR) / f"{name}.png", dpi=100, bbox_inches="tight")


# %% [markdown]
# ## 1. A CNN written the ordinary way
#
# Channel dropout (`nn.Dropout2d`) in front of the second convolution drops whole input channels:
# the family's "columns" of a convolution are the weights attached to one input channel.
# Unit dropout (`nn.Dropout`) in front of the last linear layer drops its input units.

# %%
class SmallCNN(nn.Module):
    """conv(3x3, 16) - ReLU - pool - Dropout2d - conv(3x3, 32) - ReLU - flatten - FC 64 - ReLU
    - Dropout - FC 10, for 8x8 grey images."""

    def __init__(self, channel_drop_rate=0.2, unit_drop_rate=0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.channel_dropout = nn.Dropout2d(channel_drop_rate)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.dropout = nn.Dropout(unit_drop_rate)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)          # 8x8 -> 4x4
        h = F.relu(self.conv2(self.channel_dropout(h)))
        h = F.relu(self.fc1(torch.flatten(h, 1)))
        return self.fc2(self.dropout(h))


torch.manual_seed(SEED)
net = SmallCNN()
for layer in find_covered_layers(net):
    print(f"{layer.name:5s} {layer.kind:6s} keep_prob={layer.keep_prob:g} "
          f"(dropout module: {layer.dropout}) weight {layer.weight_shape} -> "
          f"{layer.num_rows} x {layer.num_cols} columns")

# %% [markdown]
# Every `nn.Conv2d` and `nn.Linear` is covered. `conv1` and `fc1` have no dropout in front
# (`keep_prob = 1`: a Gaussian of scale $\theta$ around the mean); `conv2` gets
# `keep_prob = 0.8` from the `nn.Dropout2d(0.2)` and `fc2` `keep_prob = 0.5`.
#
# ## 2. Model, guide and the per-example ELBO
#
# The prior is $\mathcal{N}(0, l^{-2})$ on every covered weight. As $\theta \to 0$ the KL acts
# as the weight decay $\pi l^2/(2N)\,\lVert\mathbf{M}\rVert^2$; $l = \sqrt{5\cdot 10^{-4} N}$
# matches torch's `weight_decay = 5e-4` on the `keep_prob = 1` layers.

# %%
data = load_digits_split(seed=SEED)
print(data.description)
N = len(data.y_train)
length_scale = math.sqrt(5e-4 * N)
pyro.clear_param_store()
pyro.set_rng_seed(SEED)
model = ModuleBNN(net, prior_length_scale=length_scale, likelihood="categorical")
guide = DropoutGuide(model, theta=THETA)  # means initialised from net's weights
svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 2e-3}),
                     PerExampleDropoutELBO(num_masks_seed=SEED))
shuffle = torch.Generator().manual_seed(SEED)
losses = []
t_train = time.perf_counter()
for _ in range(EPOCHS):
    perm = torch.randperm(N, generator=shuffle)
    total = 0.0
    for s in range(0, N, 64):
        idx = perm[s: s + 64]
        total += svi.step(data.x_train[idx], data.y_train[idx], num_data=N) * len(idx)
    losses.append(total / N / N)  # mean over minibatches of -ELBO, per training image
t_train = time.perf_counter() - t_train
print(f"{EPOCHS} epochs in {t_train:.1f} s; -ELBO / N: first epoch {losses[0]:.3f}, "
      f"last {losses[-1]:.3f} (it includes the KL's constant in theta)")
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(range(1, EPOCHS + 1), losses, "-o", ms=3)
ax.set_xlabel("epoch")
ax.set_ylabel("-ELBO / N (per-example draws)")
save(fig, "06_training_loss")
plt.show()

# %% [markdown]
# ## 3. Predict: `pyro.infer.Predictive`, and MC dropout through the network's own dropout
#
# `Predictive` draws the weights from the guide, one draw per sample shared by the whole test
# set. `guide.load_into(net)` writes the means back (module weight $\pi\mathbf{M}$, as
# `torch.nn.Dropout` rescales kept units by $1/\pi$); MC dropout of `net` in training mode then
# samples the same predictive distribution without the jitter $\theta$.

# %%
predictive = pyro.infer.Predictive(model, guide=guide, num_samples=T, return_sites=("f",))
with torch.no_grad():
    f_pyro = predictive(data.x_test)["f"]            # T x N_test x 10 logits
guide.load_into(net)
net.train()  # dropout on: MC dropout
with torch.no_grad(), torch.random.fork_rng():
    torch.manual_seed(SEED + 1)
    f_mc = torch.stack([net(data.x_test) for _ in range(T)])
net.eval()
with torch.no_grad():
    f_std = net(data.x_test)
logits = {"predictive": f_pyro, "mc_dropout": f_mc, "standard_dropout": f_std}
cal = calibration_records(logits, data.y_test, "digits")
for method in logits:
    vals = {r["metric"]: r["value"] for r in cal if r["method"] == method}
    print(f"{method:17s} accuracy {vals['accuracy']:.4f}  NLL {vals['nll']:.4f}  "
          f"ECE {vals['ece']:.4f}")

# %% [markdown]
# The uncertainty of each test image: predictive entropy and mutual information (nats) of the
# `T` samples, for the images the network gets right and wrong.

# %%
summary = classification_summary(f_pyro)
wrong = summary.probs.argmax(-1) != data.y_test
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, values, name in [(axes[0], summary.predictive_entropy, "predictive entropy (nats)"),
                         (axes[1], summary.mutual_information, "mutual information (nats)")]:
    bins = torch.linspace(0, float(values.max()) + 1e-6, 25).numpy()
    ax.hist(values[~wrong].numpy(), bins=bins, alpha=0.6, label=f"correct ({int((~wrong).sum())})")
    ax.hist(values[wrong].numpy(), bins=bins, alpha=0.6, label=f"wrong ({int(wrong.sum())})")
    ax.set_xlabel(name)
    ax.set_yscale("log")
    ax.legend()
fig.suptitle(f"Predictive of the converted CNN on the test digits (T={T})")
fig.tight_layout()
save(fig, "06_uncertainty_histograms")
plt.show()

# %% [markdown]
# ## 4. The predictive in ArviZ
#
# The MC draws are independent, so one chain of `T` draws. The pointwise log-likelihood
# $\log\operatorname{softmax}(f_t(\mathbf{x}_n))_{y_n}$ goes into the `log_likelihood` group,
# the predicted classes into `posterior_predictive`; `az.loo` then estimates the expected log
# predictive density (with its Pareto-k diagnostic, which flags draws that are too few for
# importance sampling).

# %%
log_lik = torch.log_softmax(f_pyro, -1).gather(
    -1, data.y_test.expand(T, -1)[..., None])[..., 0]      # T x N_test
idata = az.from_dict(
    {"posterior": {"logits": f_pyro[None].numpy()},
     "posterior_predictive": {
         "y": torch.distributions.Categorical(logits=f_pyro).sample()[None].numpy()},
     "log_likelihood": {"y": log_lik[None].numpy()},
     "observed_data": {"y": data.y_test.numpy()}},
    dims={"logits": ["obs", "class"], "y": ["obs"]})
print(idata)
with torch.no_grad():
    lppd = float((torch.logsumexp(log_lik, 0) - math.log(T)).sum())
print(f"log pointwise predictive density: {lppd:.2f} (mean {lppd / len(data.y_test):.4f} "
      f"per image = minus the NLL above)")
loo = az.loo(idata, pointwise=True)
print(loo)
fig, ax = plt.subplots(figsize=(6, 3))
# arviz-plots draws into this figure's axes through the toolkit's plot_collection_on
azp.plot_khat(loo, plot_collection=plot_collection_on(ax, loo))
k = np.asarray(loo.pareto_k)
print(f"Pareto k: {(k <= 0.5).sum()} images <= 0.5, {((k > 0.5) & (k <= 0.7)).sum()} in "
      f"(0.5, 0.7], {(k > 0.7).sum()} > 0.7 (of {k.size})")
ax.set_title("Pareto k of the PSIS-LOO estimate per test image")
save(fig, "06_pareto_k")
plt.show()

# %% [markdown]
# ## Summary
#
# `find_covered_layers` read where dropout acts from the network's own `forward`; the network
# was trained as the MC dropout variational family with the per-example ELBO, and its means,
# loaded back into the module, give the same kind of predictions through the module's own
# dropout as `pyro.infer.Predictive` does through the guide. The same conversion, applied to
# the LeNet on real MNIST, is `python -m comparisons rotated-digit --data mnist --path pyro`
# (`docs/experiments/classification.md`). In smoke mode the network is under-trained.

# %%
print(f"done in {time.perf_counter() - T0:.1f} s (SMOKE={SMOKE})")
