r"""The equivalence report on a user's own network: does the full ELBO of the MC dropout family,
built from the module, reduce to the module's dropout loss?

The rows are those of :mod:`vi_dropout.verify`, computed on the converted network
(:func:`~vi_dropout.conversion.find_covered_layers`, one weight draw per example by
:func:`~vi_dropout.module_forward.module_forward`), for every covered weight and bias:

* **gradient**: :math:`\nabla(-\mathrm{ELBO}/(N\tau))` against :math:`\nabla\mathcal{L}_{\text{dropout}}`
  for :math:`\theta` from 0.1 to :math:`10^{-6}` (common random numbers), tolerance
  :math:`50\theta` and a log-log slope in [0.8, 1.5];
* **value**: the residual after the predicted :math:`-\log\theta` constant, tolerance
  :math:`10\theta`;
* **pyro**: ``Trace_ELBO`` of :class:`~vi_dropout.bnn.ModuleBNN` and its guide against the
  expected dropout gradient;
* **trajectory**: SGD of the module itself, with its own ``nn.Dropout`` layers and weight decay,
  against SGD on the per-example ELBO at a tiny :math:`\theta`, same initialisation and masks.

The jitter :math:`\theta` flips a ReLU whose pre-activation lies within about :math:`\theta` of
its kink, which changes that example's gradient by O(1); the rate of such flips grows with the
number of units, so on a user's (often larger) network the rows use :math:`\theta` from
:math:`10^{-5}` to :math:`10^{-8}` (:data:`NETWORK_THETAS`; the slope row still checks the
:math:`O(\theta)` convergence) and the trajectory runs at :math:`\theta = 10^{-8}`. Parameters
the family does not cover (e.g. BatchNorm) are held fixed during the report.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2),
    ...                           torch.nn.Linear(8, 1))
    >>> x, y = torch.randn(32, 2), torch.randn(32, 1)
    >>> rows = verify_network(net, x, y, quick=True)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from .conversion import dropout_free_copy, find_covered_layers
from .module_forward import draw_module_masks, module_dropout_loss, module_negative_elbo
from .objectives import elbo_offset_of_layers, weight_decay_from_prior
from .validation import check_finite, check_positive, check_targets

__all__ = ["ModuleProblem", "check_module_trajectory", "verify_network", "NETWORK_THETAS",
           "load_model_factory", "load_data_file"]

DTYPE = torch.float64
#: the jitters of the gradient and value rows on a user's network
NETWORK_THETAS = (1e-5, 1e-6, 1e-7, 1e-8)


class ModuleProblem:
    """A user's network and data, in float64, with the interface the checks of
    :mod:`vi_dropout.verify` use (``params``, ``masks``, ``noise``, ``dropout_loss``,
    ``scaled_negative_elbo``, ``offset``, ``pyro_model_and_guide``).

    Args:
        module: the network in its training configuration (``nn.Dropout`` before ``nn.Linear``,
            ``nn.Dropout2d`` before ``nn.Conv2d``).
        x: ``N x ...`` inputs the module takes.
        y: ``N x D`` targets (Gaussian) or ``N`` class indices (categorical).
        likelihood: ``"gaussian"`` or ``"categorical"``.
        prior_length_scale: :math:`l` of the prior :math:`\\mathcal{N}(0, l^{-2})`.
        tau: Gaussian precision (ignored for categorical).
        keep_probs: optional explicit ``{layer name: keep_prob}`` map.
    """

    def __init__(self, module: nn.Module, x, y, *, likelihood: str = "gaussian",
                 prior_length_scale: float = 1.0, tau: float = 1.0,
                 keep_probs: Mapping[str, float] | None = None):
        if likelihood not in ("gaussian", "categorical"):
            raise ValueError(f"likelihood must be 'gaussian' or 'categorical', got {likelihood!r}")
        self.likelihood = likelihood
        self.module = copy.deepcopy(module).to(DTYPE)
        self.layers = find_covered_layers(self.module, keep_probs)
        self.keep_probs = tuple(layer.keep_prob for layer in self.layers)
        self.x = check_finite(torch.as_tensor(x, dtype=DTYPE), "x")
        y = torch.as_tensor(y)
        y = y.to(DTYPE) if likelihood == "gaussian" else y.long()
        self.y = check_targets(y, "y", num_rows=self.x.shape[0], likelihood=likelihood)
        self.num_data = self.x.shape[0]
        self.prior_length_scale = check_positive(prior_length_scale, "prior_length_scale")
        self.tau = check_positive(tau, "tau") if likelihood == "gaussian" else 1.0
        self.copy = dropout_free_copy(self.module)
        for prm in self.copy.parameters():  # uncovered parameters stay fixed
            prm.requires_grad_(False)
        subs = [self.module.get_submodule(layer.name) for layer in self.layers]
        self.weights = [layer.means_from_module(m.weight.detach()) for layer, m in
                        zip(self.layers, subs)]
        self.biases = [m.bias.detach().clone() for m in subs if m.bias is not None]
        try:
            with torch.no_grad():
                out = self.copy(self.x[:2])
        except (RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"x of shape {tuple(self.x.shape)} does not go through the module "
                             f"({first})") from None
        if likelihood == "gaussian" and out.shape[-1] != self.y.shape[-1]:
            raise ValueError(f"y has {self.y.shape[-1]} column(s) but the module outputs "
                             f"{out.shape[-1]}")

    # --- the interface of vi_dropout.verify's checks -------------------------------------------
    def params(self, requires_grad: bool = True):
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

    def masks(self, seed: int):
        return draw_module_masks(self.layers, self.num_data, torch.Generator().manual_seed(seed),
                                 dtype=DTYPE)

    def noise(self, seed: int) -> int:
        """The seed of the jitter's standard normals (drawn in layer-call order)."""
        return seed

    def dropout_loss(self, weights, biases, masks):
        return module_dropout_loss(self.copy, self.layers, weights, self._all_biases(biases),
                                   self.x, self.y, masks=masks,
                                   prior_length_scale=self.prior_length_scale, tau=self.tau,
                                   likelihood=self.likelihood)

    def scaled_negative_elbo(self, weights, biases, masks, theta, noise, gap_samples=256,
                             gap_seed=0):
        """:math:`-\\widehat{\\mathrm{ELBO}}/(N\\tau)` with the exact KL (Prop. 1 + gap); ``noise``
        seeds the jitter (the gap's draws follow it in the same stream)."""
        nelbo = module_negative_elbo(
            self.copy, self.layers, weights, self._all_biases(biases), self.x, self.y,
            masks=masks, scale=theta, prior_length_scale=self.prior_length_scale, tau=self.tau,
            likelihood=self.likelihood, generator=torch.Generator().manual_seed(int(noise)),
            gap_samples=gap_samples)
        return nelbo / (self.num_data * self.tau)

    def offset(self, theta: float) -> float:
        r"""The predicted :math:`-\mathrm{ELBO}/(N\tau) - \mathcal{L}_{\text{dropout}}` as
        :math:`\theta \to 0`: :math:`\frac{D}{2\tau}\log\frac{2\pi}{\tau}` (Gaussian) plus
        :math:`\frac{1}{N\tau}\sum_i [Q_i(K_i c - H(\pi_i)) + B_i c]`, :math:`c = \frac12(l^2
        \theta^2 - 1 - \log l^2\theta^2)`, :math:`B_i` the bias size."""
        layers = [(layer.num_rows, layer.num_cols,
                   layer.weight_shape[0] if layer.has_bias else 0, layer.keep_prob)
                  for layer in self.layers]
        return elbo_offset_of_layers(layers, theta, self.prior_length_scale, self.num_data,
                                     self.tau, int(self.y.shape[-1]) if self.likelihood ==
                                     "gaussian" else 1, self.likelihood)

    def pyro_model_and_guide(self, theta: float):
        """:class:`~vi_dropout.bnn.ModuleBNN` and its guide at the problem's means, and the
        ``Trace_ELBO`` (one weight draw per particle, particles in a loop)."""
        from pyro.infer import Trace_ELBO

        from .bnn import ModuleBNN, ModuleDropoutGuide

        keep = {layer.name: layer.keep_prob for layer in self.layers}
        model = ModuleBNN(self.module, prior_length_scale=self.prior_length_scale, tau=self.tau,
                          likelihood=self.likelihood, keep_probs=keep)
        guide = ModuleDropoutGuide(model, scale=theta)
        params = list(guide.weight_locs) + [b for b in guide.bias_locs if b is not None]
        return model, guide, params, lambda n: Trace_ELBO(num_particles=n)

    # --- weight decays in the module's (inverted-dropout) convention ---------------------------
    def decays(self):
        """Per covered layer ``(lambda_W, lambda_b)`` of the prior (seed convention)."""
        return [(weight_decay_from_prior(self.prior_length_scale, layer.keep_prob, self.num_data,
                                         self.tau),
                 weight_decay_from_prior(self.prior_length_scale, 1.0, self.num_data, self.tau))
                for layer in self.layers]


def check_module_trajectory(problem: ModuleProblem, num_steps: int = 100, lr: float = 0.05,
                            theta: float = 1e-8, seed: int = 3) -> list[dict]:
    r"""``num_steps`` of full-batch SGD on (a) the module itself, in training mode with its own
    dropout layers and torch's ``weight_decay``, and (b) :math:`-\mathrm{ELBO}/(N\tau)` (one
    weight draw per example, :math:`\theta = 10^{-8}`), from the same initialisation and with the
    same masks (the global generator is reseeded before (a)'s forward and (b)'s masks are drawn
    from it in the order the dropout layers run). (a)'s weights are mapped by
    :math:`\mathbf{M} = \mathbf{W}'/\pi`, its step sizes are :math:`\eta\pi^2` and its decays
    :math:`2\lambda/\pi^2` (see :func:`vi_dropout.verify.check_trajectories`). Uncovered
    parameters are fixed. Tolerance: max parameter difference :math:`\le 10^{-6}`."""
    from .verify import report_row

    net = copy.deepcopy(problem.module).train()
    for prm in net.parameters():
        prm.requires_grad_(False)
    groups = []
    for layer, (wd, bd) in zip(problem.layers, problem.decays()):
        sub = net.get_submodule(layer.name)
        sub.weight.requires_grad_(True)
        groups.append({"params": [sub.weight], "lr": lr * layer.keep_prob**2,
                       "weight_decay": 2 * wd / layer.keep_prob**2})
        if sub.bias is not None:
            sub.bias.requires_grad_(True)
            groups.append({"params": [sub.bias], "lr": lr, "weight_decay": 2 * bd})
    opt_a = torch.optim.SGD(groups, lr=lr)
    ws, bs = problem.params()
    opt_b = torch.optim.SGD(ws + bs, lr=lr)
    for step in range(num_steps):
        torch.manual_seed(seed * 100_003 + step)
        out = net(problem.x)
        if problem.likelihood == "gaussian":
            loss_a = 0.5 * (problem.y - out).pow(2).sum(-1).mean()
        else:
            loss_a = nn.functional.cross_entropy(out, problem.y)
        opt_a.zero_grad()
        loss_a.backward()
        opt_a.step()
        torch.manual_seed(seed * 100_003 + step)
        masks = draw_module_masks(problem.layers, problem.num_data, None, dtype=DTYPE)
        loss_b = problem.scaled_negative_elbo(ws, bs, masks, theta, seed + step, gap_samples=0)
        opt_b.zero_grad()
        loss_b.backward()
        opt_b.step()
    diff = 0.0
    with torch.no_grad():
        b_iter = iter(bs)
        for layer, w in zip(problem.layers, ws):
            sub = net.get_submodule(layer.name)
            diff = max(diff, float((layer.means_from_module(sub.weight) - w).abs().max()))
            if sub.bias is not None:
                diff = max(diff, float((sub.bias - next(b_iter)).abs().max()))
        moved = max(float((w - w0).abs().max()) for w, w0 in zip(ws, problem.weights))
    return [report_row("trajectory", f"{num_steps} SGD steps, theta={theta:g}", diff, "<= 1e-06",
                 diff <= 1e-6, f"parameters moved up to {moved:.3f}")]


def verify_network(module: nn.Module, x, y, *, likelihood: str = "gaussian",
                   prior_length_scale: float = 1.0, tau: float = 1.0,
                   keep_probs: Mapping[str, float] | None = None, quick: bool = False,
                   show_progress: bool = False) -> list[dict]:
    """The equivalence report (gradient, value, pyro and trajectory rows) on the user's
    ``module`` and data; see the module docstring. ``quick`` uses fewer Monte Carlo samples in
    the Pyro row (same tolerances). Returns the rows (:func:`vi_dropout.verify.format_table`)."""
    from tqdm.auto import tqdm

    from .verify import check_gradients, check_pyro_gradient, check_values

    problem = ModuleProblem(module, x, y, likelihood=likelihood,
                            prior_length_scale=prior_length_scale, tau=tau, keep_probs=keep_probs)
    rows: list[dict] = []
    with tqdm(total=4, desc="verify", disable=not show_progress) as bar:
        rows += check_gradients(problem, thetas=NETWORK_THETAS)
        bar.update()
        rows += check_values(problem, thetas=NETWORK_THETAS)
        bar.update()
        n = (64, 4, 100) if quick else (256, 8, 400)
        rows += check_pyro_gradient(problem, num_particles=n[0], num_batches=n[1],
                                    num_mask_draws=n[2])
        bar.update()
        rows += check_module_trajectory(problem)
        bar.update()
    return rows


def load_model_factory(spec: str) -> nn.Module:
    """``FILE.py:FACTORY`` -> the module ``FACTORY()`` returns (the ``--model`` of the command
    line). Every failure is a ValueError naming ``--model``, the file and what went wrong."""
    import importlib.util
    from pathlib import Path

    path, sep, name = str(spec).rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise ValueError(f"--model must be FILE.py:FACTORY, got {spec!r}")
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--model: file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"_vi_dropout_user_{file.stem}", file)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"--model: {path!r} is not a Python file")
    user = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(user)
    except Exception as exc:  # noqa: BLE001 - the user's file: report it in one line
        raise ValueError(f"--model: importing {path!r} failed: {type(exc).__name__}: "
                         f"{exc}") from None
    factory = getattr(user, name, None)
    if not callable(factory):
        defined = sorted(k for k, v in vars(user).items() if callable(v) and not k.startswith("_"))
        raise ValueError(f"--model: {path!r} has no callable {name!r} (it defines {defined})")
    try:
        net = factory()
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"--model: {name}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise ValueError(f"--model: {name}() must return a torch.nn.Module, got "
                         f"{type(net).__name__}")
    return net


def load_data_file(path: str, likelihood: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The arrays ``x`` and ``y`` of an ``.npz`` file (the ``--data`` of the command line): ``y``
    is ``N x D`` for a Gaussian likelihood and ``N`` class indices for a categorical one."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise ValueError(f"--data: {path!r} has no array(s) {missing} (it holds "
                                 f"{data.files})")
            x, y = np.asarray(data["x"]), np.asarray(data["y"])
    except (OSError, ValueError) as exc:
        if str(exc).startswith("--data"):
            raise
        raise ValueError(f"--data: cannot read {path!r} as .npz: {exc}") from None
    for arr, name in ((x, "x"), (y, "y")):
        if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
            raise ValueError(f"--data: array {name} of {path!r} must be finite numbers")
    return torch.as_tensor(x, dtype=DTYPE), torch.as_tensor(y)
