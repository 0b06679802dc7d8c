r"""The problem every equivalence check works on: a network, its data and its means in float64,
with the two objectives of the derivation evaluated with common random numbers.

:class:`ModuleProblem` holds a user's network converted (:func:`~vi_dropout.conversion.
convert_module`), its data, the means of its covered layers (the paper's convention), masks with
``nn.Dropout``'s semantics, the dropout loss and the scaled negative ELBO
(:func:`~vi_dropout.infer.elbo.dropout_loss`, :func:`~vi_dropout.infer.elbo.negative_elbo`);
:class:`GradientDifferences` measures their gradients' relative difference at a :math:`\theta`.
The checks of :mod:`vi_dropout.verify.network` and :mod:`vi_dropout.verify.paper` read them.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(3, 8), torch.nn.ReLU(),
    ...                           torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    >>> x = torch.randn(16, 3)
    >>> problem = ModuleProblem(net, x, x[:, :1], prior_length_scale=0.5, tau=5.0)
    >>> problem.param_names
    ['1.weight', '4.weight', '1.bias', '4.bias']
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from vi_dropout.conversion import convert_module, dropout_free_copy
from vi_dropout.distributions import DropoutNormal
from vi_dropout.forward import covered_input_shapes, draw_masks, module_forward
from vi_dropout.infer.elbo import dropout_loss, elbo_dropout_offset, negative_elbo, weight_decay
from vi_dropout.inputs import batch_size, check_inputs, describe, map_inputs, take
from vi_dropout.kl import kl_gap
from vi_dropout.validation import check_positive, check_targets
from vi_dropout.verify.kinks import BranchRecorder, BranchReport, branch_changes

__all__ = ["ModuleProblem", "GradientDifferences", "relative_difference", "DTYPE",
           "GAP_SEPARATION"]

DTYPE = torch.float64
#: columns with ||m_a|| / theta above this have a KL gap below 1e-80 (skipped: :meth:`ModuleProblem.gap`)
GAP_SEPARATION = 40.0


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    num, den = float((a - b).norm()), float(b.norm())
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den



def _as_float(v: torch.Tensor) -> torch.Tensor:
    return v.to(DTYPE) if v.is_floating_point() else v


class ModuleProblem:
    r"""A user's network and data in float64, with what the checks need: the covered layers,
    their means, masks with ``nn.Dropout``'s semantics, the dropout loss and the scaled
    negative ELBO.

    Args:
        module: the network in its training configuration.
        x: inputs the module takes (a tensor, a tuple or a dict of tensors, batch first:
            :mod:`vi_dropout.inputs`).
        y: ``N x D`` targets (Gaussian) or ``N`` class indices (categorical).
        likelihood: ``"gaussian"`` or ``"categorical"``.
        prior_length_scale: :math:`l` of the prior :math:`\mathcal{N}(0, l^{-2})`.
        tau: Gaussian precision (ignored for categorical).
        keep_probs: optional explicit ``{layer name: keep_prob}`` map.
        uncovered_dropout: ``"refuse"`` or ``"disable"`` (:func:`~vi_dropout.conversion.
            convert_module`).
    """

    #: columns farther than this many theta from their dropped component are left out of the
    #: gap (:meth:`gap`)
    gap_separation: float = GAP_SEPARATION
    #: the seed of the gap's own generator (``None``: the gap continues the noise's generator)
    gap_seed: int | None = None

    def __init__(self, module: nn.Module, x, y, *, likelihood: str = "gaussian",
                 prior_length_scale: float = 1.0, tau: float = 1.0,
                 keep_probs: Mapping[str, float] | None = None,
                 uncovered_dropout: str = "refuse"):
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if likelihood not in ("gaussian", "categorical"):
            raise ValueError(f"likelihood must be 'gaussian' or 'categorical', got {likelihood!r}")
        self.likelihood = likelihood
        self.module = copy.deepcopy(module).to(DTYPE)
        self.conversion = convert_module(self.module, keep_probs,
                                         uncovered_dropout=uncovered_dropout)
        self.layers = list(self.conversion.layers)
        self.keep_probs = tuple(layer.keep_prob for layer in self.layers)
        if isinstance(x, (np.ndarray, list)) and not isinstance(x, tuple):
            x = torch.as_tensor(np.asarray(x))
        self.x = map_inputs(_as_float, check_inputs(x, "x"))
        self.num_data = batch_size(self.x)
        y = torch.as_tensor(y)
        y = y.to(DTYPE) if likelihood == "gaussian" else y
        if likelihood == "categorical" and y.is_floating_point():
            if not bool((y == y.round()).all()):
                raise ValueError("y must hold class indices (integers) for a categorical "
                                 "likelihood, got non-integer values")
            y = y.long()
        self.y = check_targets(y, "y", num_rows=self.num_data, likelihood=likelihood)
        self.prior_length_scale = check_positive(prior_length_scale, "prior_length_scale")
        self.tau = check_positive(tau, "tau") if likelihood == "gaussian" else 1.0
        self.copy = dropout_free_copy(self.module)
        for prm in self.copy.parameters():  # uncovered parameters stay fixed
            prm.requires_grad_(False)
        subs = [self.module.get_submodule(layer.name) for layer in self.layers]
        self.weights = [layer.means_from_module(m.weight.detach()) for layer, m in
                        zip(self.layers, subs)]
        self.biases = [m.bias.detach().clone() for m in subs if m.bias is not None]
        probe = min(2, self.num_data)
        try:
            self.input_shapes = covered_input_shapes(self.copy, self.layers, self.x)
            probe_x = take(self.x, slice(0, probe))
            with torch.no_grad():
                out = module_forward(self.copy, self.layers, self.weights,
                                     self._all_biases(self.biases), probe_x,
                                     masks=self.masks(0, probe))
                again = module_forward(self.copy, self.layers, self.weights,
                                       self._all_biases(self.biases), probe_x,
                                       masks=self.masks(0, probe))
        except (RuntimeError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"x of shape {describe(self.x)} does not go through the module "
                             f"({first})") from None
        if not torch.equal(out, again):
            raise ValueError(
                f"module {type(module).__name__} is random with its dropout switched off: two "
                f"passes with the same weights and masks differ by "
                f"{float((out - again).abs().max()):.3g}. Something in its forward draws random "
                f"numbers (a hand-written dropout such as x * torch.bernoulli(...) / keep, "
                f"torch.rand, F.rrelu): the ELBO cannot model it. Use nn.Dropout or F.dropout "
                f"in front of a weight layer instead")
        if likelihood == "gaussian":
            if out.dim() != 2:
                raise ValueError(f"a Gaussian likelihood needs N x D outputs, but the module "
                                 f"outputs shape {tuple(out.shape)} for {probe} example(s)")
            if out.shape[-1] != self.y.shape[-1]:
                raise ValueError(f"y has {self.y.shape[-1]} column(s) but the module outputs "
                                 f"{out.shape[-1]}")
        elif out.dim() != 2:
            raise ValueError(f"a categorical likelihood needs N x C logits, but the module "
                             f"outputs shape {tuple(out.shape)} for {probe} example(s)")
        elif int(self.y.max()) >= out.shape[-1]:
            raise ValueError(f"y holds class {int(self.y.max())} but the module outputs "
                             f"{out.shape[-1]} logits")

    # --- parameters and draws ------------------------------------------------------------------
    def params(self, requires_grad: bool = True):
        """Fresh copies ``(weights, biases)`` of the means (``K x Q`` columns, the paper's convention)
        and of the biases of the layers that have one."""
        ws = [w.clone().requires_grad_(requires_grad) for w in self.weights]
        bs = [b.clone().requires_grad_(requires_grad) for b in self.biases]
        return ws, bs

    @property
    def param_names(self) -> list[str]:
        return ([f"{layer.name}.weight" for layer in self.layers]
                + [f"{layer.name}.bias" for layer in self.layers if layer.has_bias])

    def _all_biases(self, bs):
        it = iter(bs)
        return [next(it) if layer.has_bias else None for layer in self.layers]

    def masks(self, seed: int | None, num_data: int | None = None):
        """Per-example masks with ``nn.Dropout``'s semantics (one per token of a token input),
        from a generator seeded ``seed`` (torch's global generator when ``None``)."""
        n = self.num_data if num_data is None else num_data
        shapes = [(n, *s[1:]) for s in self.input_shapes]
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        return draw_masks(self.layers, n, gen, dtype=DTYPE, input_shapes=shapes)

    # --- the two objectives --------------------------------------------------------------------
    def dropout_loss(self, weights, biases, masks, x=None, y=None):
        """The dropout loss with the prior's weight decays (the paper's convention)."""
        return dropout_loss(self.copy, self.layers, weights, self._all_biases(biases),
                                   self.x if x is None else x, self.y if y is None else y,
                                   masks=masks, prior_length_scale=self.prior_length_scale,
                                   tau=self.tau, likelihood=self.likelihood,
                                   num_data=self.num_data)

    def gap(self, weights, theta: float, num_samples: int, generator) -> torch.Tensor:
        r"""The Monte Carlo KL gap (exact KL minus Proposition 1) of the covered weights, over the
        columns with :math:`\lVert\mathbf{m}_a\rVert < 40\theta` only
        (:attr:`gap_separation`): for a column
        :math:`d = \lVert\mathbf{m}_a\rVert/\theta` apart from its dropped component, a draw
        is attributed to the wrong component with probability about :math:`\Phi(-d/2)`, and
        its gap (the entropy of that attribution) is below :math:`10^{-80}` at :math:`d = 40`;
        skipping such columns makes the gap of a network with :math:`10^6` weights cost nothing
        at small :math:`\theta`."""
        total = weights[0].new_zeros(())
        for layer, m in zip(self.layers, weights):
            near = m.detach().norm(dim=0) < self.gap_separation * theta
            if bool(near.any()) and num_samples:
                q = DropoutNormal(m[:, near], layer.keep_prob, theta, validate_args=False)
                total = total + kl_gap(q, num_samples, generator=generator,
                                       differentiable=True).estimate
        return total

    def scaled_negative_elbo(self, weights, biases, masks, theta, noise_seed, gap_samples=256,
                             x=None, y=None):
        r""":math:`-\widehat{\mathrm{ELBO}}/(N\tau)` with the exact KL (Proposition 1 + the gap
        of :meth:`gap`); ``noise_seed`` seeds the jitter's standard normals (drawn in layer-call
        order) and then the gap's draws (from a generator of their own seeded
        :attr:`gap_seed` when that is set)."""
        gen = torch.Generator().manual_seed(int(noise_seed))
        nelbo = negative_elbo(
            self.copy, self.layers, weights, self._all_biases(biases),
            self.x if x is None else x, self.y if y is None else y, masks=masks, theta=theta,
            prior_length_scale=self.prior_length_scale, tau=self.tau, likelihood=self.likelihood,
            num_data=self.num_data, generator=gen, gap_samples=0)
        if self.gap_seed is not None:
            gen = torch.Generator().manual_seed(self.gap_seed)
        return (nelbo + self.gap(weights, theta, gap_samples, gen)) / (self.num_data * self.tau)

    def offset(self, theta: float) -> float:
        r"""The predicted :math:`-\mathrm{ELBO}/(N\tau) - \mathcal{L}_{\text{dropout}}` as
        :math:`\theta \to 0` (:func:`~vi_dropout.infer.elbo.elbo_dropout_offset`)."""
        num_outputs = int(self.y.shape[-1]) if self.likelihood == "gaussian" else 1
        return elbo_dropout_offset(self.layers, theta, self.prior_length_scale, self.num_data,
                                   self.tau, num_outputs, self.likelihood)

    def decays(self):
        """Per covered layer ``(lambda_W, lambda_b)`` of the prior (the paper's convention)."""
        return [(weight_decay(self.prior_length_scale, layer.keep_prob, self.num_data,
                                         self.tau),
                 weight_decay(self.prior_length_scale, 1.0, self.num_data, self.tau))
                for layer in self.layers]

    def branch_report(self, masks, theta: float, noise_seed: int) -> BranchReport:
        """Which units change branch between the dropout network (the given masks) and the same
        network under the jitter ``theta`` (the standard normals of ``noise_seed``)."""
        ws, bs = self.params(requires_grad=False)
        recs = []
        for jitter in (0.0, theta):
            rec = BranchRecorder(self.num_data, self.copy)
            with torch.no_grad(), rec:
                module_forward(self.copy, self.layers, ws, self._all_biases(bs), self.x,
                               masks=masks, theta=jitter,
                               generator=torch.Generator().manual_seed(int(noise_seed)))
            recs.append(rec)
        return branch_changes(*recs)


# --- the O(theta) regime ---------------------------------------------------------------------
class GradientDifferences:
    r"""The relative differences between :math:`\nabla(-\mathrm{ELBO}/N\tau)` and
    :math:`\nabla\mathcal{L}_{\text{dropout}}` of a problem at its means, with common random
    numbers: the same ``masks`` and the jitter's normals from ``noise_seed``.

    Calling it with a :math:`\theta` returns ``(per parameter, all parameters)``: a list in the
    order of :attr:`ModuleProblem.param_names` and one number, each
    :math:`\lVert g_{\text{ELBO}} - g_{\text{dropout}}\rVert / \lVert g_{\text{dropout}}\rVert`.

    Example:
        >>> from vi_dropout.verify.paper import VerifyProblem
        >>> problem = VerifyProblem(num_data=16)
        >>> per_param, total = GradientDifferences(problem, problem.masks(1), 2)(1e-6)
        >>> total < 1e-4
        True
    """

    def __init__(self, problem: ModuleProblem, masks, noise_seed: int):
        self.problem, self.masks, self.noise_seed = problem, masks, noise_seed
        ws, bs = problem.params()
        self.dropout_gradient = torch.autograd.grad(problem.dropout_loss(ws, bs, masks), ws + bs)

    def __call__(self, theta: float) -> tuple[list[float], float]:
        ws, bs = self.problem.params()
        g = torch.autograd.grad(self.problem.scaled_negative_elbo(ws, bs, self.masks, theta,
                                                                  self.noise_seed), ws + bs)
        g_drop = self.dropout_gradient
        return ([relative_difference(a, b) for a, b in zip(g, g_drop)],
                relative_difference(torch.cat([t.flatten() for t in g]), torch.cat([t.flatten() for t in g_drop])))
