r"""The machinery the toy pitfall experiments share: the toy data, the batched MC dropout networks,
the GP with the network's prior and NUTS on the network."""

from __future__ import annotations

import math
from collections.abc import Sequence

import arviz as az
import gpytorch
import torch

from comparisons.datasets.toy1d import load_toy1d
from comparisons.experiments.pitfalls.settings import PitfallHMCSettings, PitfallSettings
from comparisons.gp.fit import exact_cholesky, gp_predict
from comparisons.gp.models import ExactGPModel, make_kernel
from comparisons.gp.priors import dropout_prior_hyperparameters
from comparisons.reference.nuts import hmc_summary, run_nuts
from vi_dropout.infer.elbo import weight_decay
from vi_dropout.network import mlp_forward
from vi_dropout.predict import mc_predict
from vi_dropout.training import train_batched

__all__ = ["toy_problem", "train_mc_dropout", "gp_latent", "hmc_latent"]


def toy_problem(num_train: int, seed: int):
    data = load_toy1d(num_train=num_train, seed=seed)
    tau = (data.y_std / data.noise_std) ** 2  # true noise precision on the standardised scale
    return data, tau


def train_mc_dropout(data, tau, keep_probs: Sequence[float], settings: PitfallSettings, seed: int):
    """Train one network per keep_prob on ``data`` (one batched call); return MC samples
    ``len(keep_probs) x T x M`` at ``data.x_test`` (standardised scale)."""
    x = torch.tensor(data.x_train, dtype=torch.float64)
    y = torch.tensor(data.y_train, dtype=torch.float64)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / settings.batch_size)
    epochs = max(1, math.ceil(settings.steps / steps_per_epoch))
    regs = [weight_decay(settings.prior_length_scale, kp, n, tau) for kp in keep_probs]
    res = train_batched(x, y, keep_prob=list(keep_probs), reg=regs,
                        seeds=[seed * 1000 + i for i in range(len(keep_probs))],
                        hidden=(settings.hidden,), epochs=epochs,
                        batch_size=settings.batch_size)
    if bool(res.diverged.any()):
        bad = [keep_probs[i] for i in res.diverged.nonzero().flatten().tolist()]
        raise RuntimeError(f"pitfalls: training diverged (NaN loss) for keep_prob {bad}")
    xt = torch.tensor(data.x_test, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 17)
    out = []
    for e, kp in enumerate(keep_probs):
        s = mc_predict(xt, [w[e] for w in res.weights], [b[e] for b in res.biases], kp,
                       settings.num_samples, inverted=True, generator=gen)
        out.append(s[..., 0])
    return torch.stack(out)


def gp_latent(data, tau, settings: PitfallSettings, keep_prob: float):
    """Posterior mean and LATENT variance (no noise) of the dropout-prior arc-cosine GP."""
    h = dropout_prior_hyperparameters(settings.prior_length_scale, tau, keep_prob,
                                      input_dim=1, num_hidden=settings.hidden)
    kernel = make_kernel("arccos1", 1, h["weight_variance"], h["bias_variance"],
                         outputscale=h["outputscale"])
    x = torch.tensor(data.x_train, dtype=torch.float64)
    y = torch.tensor(data.y_train[:, 0], dtype=torch.float64)
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    likelihood.noise = h["noise"]
    model = ExactGPModel(x, y, likelihood, kernel).double()
    # Exact Cholesky at every N (GPyTorch switches to CG / Lanczos above 800 points).
    with exact_cholesky():
        mean, var = gp_predict(model, likelihood, torch.tensor(data.x_test, dtype=torch.float64))
    return mean, var - h["noise"]


def hmc_latent(data, tau, settings: PitfallSettings, hmc: PitfallHMCSettings, cache_dir):
    r"""NUTS on the network with the GP's prior; returns ``(f_draws, result, table)``.

    ``f_draws`` is ``chains x draws x M``: the network output :math:`f(x_*)` (no noise) of every
    draw at ``data.x_test`` on the standardised scale; ``table`` is :func:`hmc_summary` of those
    ``f`` (with the draws' divergences and energies), its warning re-issued by the caller.
    """
    res = run_nuts(data.x_train, data.y_train, hidden=(settings.hidden,),
                   prior_length_scale=settings.prior_length_scale, tau=tau,
                   num_chains=hmc.chains, num_warmup=hmc.warmup, num_samples=hmc.samples,
                   cache_dir=cache_dir, num_processes=hmc.processes, seed=settings.seed,
                   max_tree_depth=hmc.max_tree_depth,
                   target_accept_prob=hmc.target_accept_prob)
    xt = torch.tensor(data.x_test, dtype=torch.float64)
    ws = [torch.as_tensor(res.samples[f"layers.{i}.weight"]) for i in range(2)]
    bs = [torch.as_tensor(res.samples[f"layers.{i}.bias"]) for i in range(2)]
    with torch.no_grad():
        f = mlp_forward(xt, ws, bs, "relu")[..., 0].numpy()  # chain x draw x M
    stats = {k: res.sample_stats[k] for k in ("diverging", "energy") if k in res.sample_stats}
    idata = az.from_dict({"posterior": {"f": f}, "sample_stats": stats},
                         attrs={"method": "hmc", "sampler": "nuts",
                                "num_train": int(data.x_train.shape[0])})
    return f, res, hmc_summary(idata, var_names=["f"], warn=False)
