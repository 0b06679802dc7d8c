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
# # Classification uncertainty of a dropout LeNet: a rotated digit and calibration
#
# Figure 4 of Gal & Ghahramani (2016) trains LeNet with dropout before its last fully connected
# layer and feeds it a test image of the digit 1 rotated further and further. For every rotated
# image it draws $T = 100$ stochastic forward passes (MC dropout) and scatters the softmax
# **inputs** (logits) and **outputs** (probabilities) of the top classes. The paper's point: where
# the image stops looking like the training data the clouds should spread out, so that a wrong
# but confident-looking mean prediction comes with a visible model uncertainty. Standard dropout
# (weights scaled, one deterministic pass) returns a single point and cannot show any spread.
# Whether the spread appears is an empirical question; the summary at the end says what the
# full-setting run on the 8x8 digits shows.
#
# This notebook runs the experiment on scikit-learn's bundled 8x8 digits (no download; pass a
# folder of MNIST IDX files to `comparisons.datasets.digits.load_mnist_split` to use real MNIST) and then
# compares the calibration of MC and standard dropout on the test split:
#
# 1. data and the network;
# 2. MC dropout with the deterministic convolutional body computed once;
# 3. the rotated digit: scatters and predictive entropy, mutual information, variation ratio;
# 4. calibration: accuracy, expected calibration error (ECE), negative log-likelihood (NLL) and a
#    reliability diagram.
#
# **Smoke mode.** Set `VI_DROPOUT_SMOKE=1` (on by default when `CI` is set) to train for a few
# epochs with a few MC samples so the notebook runs in seconds; the pictures are then those of
# an under-trained network. Set `VI_DROPOUT_OUTPUT_DIR` (or `OUTPUT_DIR` below) to also save every
# figure as PNG. The same computation, at full settings, is
# `python -m comparisons rotated-digit --out DIR`.

# %%
# %matplotlib inline
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from comparisons.datasets.digits import load_digits_split
from comparisons.experiments.rotated_digit import select_digit, sweep_rotations
from comparisons.metrics.calibration import (
    calibration_records,
    predictive_probs,
    reliability_bins,
)
from comparisons.networks.lenet import (
    LeNet,
    lenet_features,
    standard_logits,
    train_lenet,
)
from comparisons.report.calibration import plot_reliability_diagram
from comparisons.report.rotated_digit import (
    plot_rotated_digit_figure,
    plot_softmax_scatter,
    rotated_digit_table,
)
from vi_dropout.predict import mc_predict

SMOKE = os.environ.get("VI_DROPOUT_SMOKE", "1" if "CI" in os.environ else "0") == "1"
OUTPUT_DIR = os.environ.get("VI_DROPOUT_OUTPUT_DIR") or None  # e.g. "figures"
SEED = 0
if SMOKE:
    torch.set_num_threads(1)  # tiny problem: extra threads only add overhead on a shared CPU
    EPOCHS, T = 3, 20
else:
    EPOCHS, T = 100, 100  # the CLI's defaults
T0 = time.perf_counter()
print(f"SMOKE={SMOKE}, epochs={EPOCHS}, T={T}, seed={SEED}")


def save(fig, name):
    """Save ``fig`` as ``OUTPUT_DIR/name.png`` when an output directory is set."""
    if OUTPUT_DIR:
        Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(OUTPUT_DIR) / f"{name}.png", dpi=100, bbox_inches="tight")


# %% [markdown]
# ## 1. Data and network
#
# The 1,797 8x8 digits (grey levels $0..16$ scaled to $[0, 1]$), split 80/20 with a fixed seed,
# stratified by class. The network is Caffe's LeNet with ReLUs, sized for 8x8 inputs by "same"
# padding: conv(5x5, 20) - pool - conv(5x5, 50) - pool - FC 500 - **dropout** - FC 10, with
# `keep_prob = 0.5` (`torch.nn.Dropout`, handed the drop rate `1 - keep_prob`, scales kept
# units by $1/\text{keep\_prob}$). Adam, minibatches of 128, weight decay $5\cdot 10^{-4}$.

# %%
data = load_digits_split(seed=SEED)
print(data.description)
net = LeNet(data.image_size, data.num_classes, keep_prob=0.5, seed=SEED)
hist = train_lenet(net, data.x_train, data.y_train, epochs=EPOCHS, seed=SEED, progress=False)
print(f"trained {EPOCHS} epochs in {hist.wall_time_s:.1f} s; final training loss "
      f"{hist.epoch_losses[-1]:.4f}")
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(range(1, EPOCHS + 1), hist.epoch_losses, "-o", ms=3)
ax.set_xlabel("epoch")
ax.set_ylabel("training cross-entropy (dropout on)")
ax.set_yscale("log")
save(fig, "05_training_loss")
plt.show()

# %% [markdown]
# ## 2. MC dropout over the last layer only
#
# Dropout sits only in front of the last layer, so everything before it is a deterministic
# function $\mathbf{h}(\mathbf{x})$ of the image. `mc_predict(x, net, T=T)` (the package's one MC
# dropout predictor, here given the module) computes $\mathbf{h}$ once and samples just the masks:
#
# $$
# \text{logits}_t(\mathbf{x}) = \mathbf{W}\,\frac{\mathbf{z}_t \odot \mathbf{h}(\mathbf{x})}{\text{keep\_prob}}
#   + \mathbf{b}, \qquad z_{t,j} \sim \mathrm{Bernoulli}(\text{keep\_prob}),
# $$
#
# which is distributed exactly like $T$ forward passes of the network in training mode (the test
# suite checks means and variances against both the closed form and `net.train()` passes).
# Its mean over masks is the standard-dropout logit, since $E[z/\text{keep\_prob}] = 1$.

# %%
x = data.x_test[:3]
h = lenet_features(net, x)
samples = mc_predict(x, net, T=2000, generator=torch.Generator().manual_seed(1))
print("features:", tuple(h.shape), " MC logits:", tuple(samples.shape))
print("max |mean of 2000 MC logits - standard logits| =",
      f"{float((samples.mean(0) - standard_logits(net, x)).abs().max()):.3f}",
      f"(MC standard deviation of the logits up to {float(samples.std(0).max()):.2f})")

# %% [markdown]
# ## 3. The rotated digit
#
# The first test image of a 1, rotated counter-clockwise through 12 angles from 0 to 165
# degrees (a choice made here). For each rotated image: $T$ MC dropout samples of the softmax
# input and output of the three classes that reach the highest mean probability at some angle
# (dots), standard dropout's single value (crosses on a dashed line), and the three summaries of
# `vi_dropout.summaries.classification_summary`:
#
# $$
# H = -\sum_c \bar p_c \log \bar p_c, \quad
# \mathrm{MI} = H - \tfrac{1}{T}\sum_t H(p_t), \quad
# \mathrm{VR} = 1 - \tfrac{\max_c \#\{t:\ \arg\max p_t = c\}}{T}.
# $$
#
# The mutual information is the part of the predictive entropy due to disagreement between the
# samples (model uncertainty); the variation ratio is the share of samples that do not vote for
# the modal class. Standard dropout only has the entropy of its one softmax.

# %%
image, row = select_digit(data.x_test, data.y_test, digit=1)
res = sweep_rotations(net, image, num_samples=T, seed=SEED, digit=1)
fig = plot_rotated_digit_figure(res, plt.figure(figsize=(12, 10)))
save(fig, "05_rotated_digit")
plt.show()
table = rotated_digit_table(res)
display(table.round(3))

# %% [markdown]
# The same scatter for every class the MC samples ever vote for (not only the top three):

# %%
voted = sorted(set(res.mc_logits.argmax(-1).flatten().tolist()))
fig, ax = plt.subplots(figsize=(8, 4))
plot_softmax_scatter(res, ax, "output", classes=voted)
save(fig, "05_softmax_output_all_voted_classes")
plt.show()
print("classes voted for by some MC sample at some angle:", voted)

# %%
peak = table.loc[table["mc_entropy"].idxmax()]
print(f"largest MC predictive entropy {peak['mc_entropy']:.3f} nats at {peak['angle_deg']:g} "
      f"degrees (standard dropout entropy there {peak['std_entropy']:.3f}); "
      f"MC mutual information there {peak['mc_mutual_info']:.3f}, "
      f"variation ratio {peak['mc_variation_ratio']:.2f}")
wrong = table[table["mc_pred"] != 1]
print(f"MC dropout predicts a class other than 1 at {len(wrong)} of {len(table)} angles; "
      f"mean probability of its prediction there {wrong['mc_prob'].mean():.3f}")

# %% [markdown]
# ## 4. Calibration on the test split
#
# Expected calibration error with 10 equal-width confidence bins $((b-1)/10, b/10]$:
# $\mathrm{ECE} = \sum_b \frac{|B_b|}{N}\,|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|$, and the
# mean negative log-likelihood of the MC-averaged softmax,
# $\mathrm{NLL} = -\frac{1}{N}\sum_n \log \frac{1}{T}\sum_t \mathrm{softmax}(\text{logits}_{t,n})_{y_n}$.

# %%
logits = {
    "mc_dropout": mc_predict(data.x_test, net, T=T,
                             generator=torch.Generator().manual_seed(SEED + 1)),
    "standard_dropout": standard_logits(net, data.x_test),
}
cal = pd.DataFrame(calibration_records(logits, data.y_test, "digits"))
display(cal.pivot(index="method", columns="metric", values="value")[["accuracy", "ece", "nll"]]
        .round(4))
probs = {m: predictive_probs(v) for m, v in logits.items()}
for m, p in probs.items():
    print(m, "examples per confidence bin:", reliability_bins(p, data.y_test).counts.tolist())
fig, ax = plt.subplots(figsize=(6, 5))
plot_reliability_diagram(probs, data.y_test, ax)
save(fig, "05_reliability_diagram")
plt.show()

# %% [markdown]
# ## Summary
#
# At the full settings (100 epochs, $T = 100$, seed 0; `docs/classification/README_section.md`
# has the figures and seeds 0-4) the 8x8 "1", which has a foot and a flag, turns into a shape
# that both MC and standard dropout call a 4 with probability 0.97-1.00 from 45 to 105 degrees.
# MC dropout's mutual information stays at or below 0.031 nats there. It peaks in the transition
# at 30 degrees (0.145 nats, entropy 0.85) and rises again past 105 degrees. MC dropout's
# predictive entropy is at least standard dropout's at every angle. On calibration the two have
# the same accuracy, and standard dropout has the slightly lower ECE and NLL in 4 of 5 seeds. On
# these small images MC dropout therefore does not flag most rotations as unfamiliar. The
# paper's MNIST setting needs `load_mnist_split(folder)` (or `--mnist-path` on the command line)
# with the IDX files. In smoke mode the network is under-trained and the numbers above differ.

# %%
print(f"done in {time.perf_counter() - T0:.1f} s (SMOKE={SMOKE})")
