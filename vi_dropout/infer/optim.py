r"""One torch optimiser for every parameter ``pyro.infer.SVI`` trains.

Pyro's :class:`pyro.optim.PyroOptim` (``pyro.optim.Adam`` and the rest) builds one
``torch.optim`` optimiser PER PARAMETER and steps them one by one. The update is elementwise, so
that costs nothing in the maths, but on a network of ordinary size its Python overhead is a large
part of an SVI step: 0.45 ms of a 2.6 ms step with :class:`~vi_dropout.infer.per_example_elbo.PerExampleDropoutELBO`
on ``examples/bn_residual.py`` (16 parameters, batch 32, 2-core CPU, 1 thread;
``benchmarks/bench_your_network.py``). :class:`JointOptim` is a drop-in ``PyroOptim`` that keeps
ONE optimiser and adds each parameter to it the first time ``SVI`` hands it over, so one
``foreach`` step updates them all:

.. math::
    \text{the same } \boldsymbol{\theta}_{t+1} = \boldsymbol{\theta}_t - \eta\,
    \hat{\mathbf{m}}_t / (\sqrt{\hat{\mathbf{v}}_t} + \epsilon) \text{ per element as
    } \texttt{pyro.optim.Adam}.

A parameter that is not in a step's trace is not updated in that step (as with Pyro's optimiser,
whose per-parameter optimiser is simply not called), and the state is saved and loaded in Pyro's
format (a state dict per parameter name), so the state of a :class:`JointOptim` loads into
``pyro.optim.Adam`` and the other way round.

Example:
    >>> import pyro, torch
    >>> from vi_dropout.guides import DropoutGuide
    >>> from vi_dropout.models import ModuleBNN
    >>> from vi_dropout.infer.per_example_elbo import PerExampleDropoutELBO
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1),
    ...                           torch.nn.Linear(16, 1))
    >>> model = ModuleBNN(net, prior_length_scale=1e-2, tau=10.0)
    >>> guide = DropoutGuide(model, theta=1e-2)
    >>> svi = pyro.infer.SVI(model, guide, JointAdam({"lr": 1e-3}), PerExampleDropoutELBO())
    >>> loss = svi.step(torch.randn(32, 3), torch.randn(32, 1), num_data=1000)
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping

import pyro
import torch
from pyro.optim.optim import PyroOptim

__all__ = ["JointAdam", "JointOptim"]


class JointOptim(PyroOptim):
    r"""A :class:`pyro.optim.PyroOptim` with ONE ``torch.optim`` optimiser for all parameters.

    Args:
        optim_constructor: a ``torch.optim.Optimizer`` class whose update is elementwise per
            parameter (Adam, AdamW, SGD, RMSprop, ...), e.g. ``torch.optim.Adam``.
        optim_args: its keyword arguments (a dict, the same for every parameter).

    Raises:
        ValueError: ``optim_constructor`` is not an optimiser class, or ``optim_args`` is not a
            dict (per-parameter arguments, a callable in Pyro, need one optimiser per parameter:
            use ``pyro.optim`` for those).

    Example:
        >>> optim = JointOptim(torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.0})
    """

    def __init__(self, optim_constructor: type[torch.optim.Optimizer],
                 optim_args: Mapping[str, object]):
        if not (isinstance(optim_constructor, type)
                and issubclass(optim_constructor, torch.optim.Optimizer)):
            raise ValueError("optim_constructor: expected a torch.optim.Optimizer class, got "
                             f"{optim_constructor!r}")
        if not isinstance(optim_args, Mapping):
            raise ValueError("optim_args: expected a dict of the optimiser's keyword arguments "
                             "(per-parameter arguments need pyro.optim's one optimiser per "
                             f"parameter), got {type(optim_args).__name__}")
        super().__init__(optim_constructor, dict(optim_args))
        self.optimizer: torch.optim.Optimizer | None = None
        self._params: dict[torch.Tensor, None] = {}  # insertion-ordered set, by identity

    def __call__(self, params: Iterable[torch.Tensor], *args, **kwargs) -> None:
        """One step of the optimiser on ``params`` (new ones are added to it first)."""
        params = list(params)
        new = [p for p in params if p not in self._params]
        if new:
            self._add(new)
        absent = []
        if len(params) != len(self._params):
            # parameters of earlier steps that this step's trace does not hold stay where they
            # are (their zeroed gradient would still move them under Adam's momentum)
            given = set(params)
            absent = [(p, p.grad) for p in self._params if p not in given]
            for p, _ in absent:
                p.grad = None
        try:
            self.optimizer.step(*args, **kwargs)
        finally:
            for p, grad in absent:
                p.grad = grad

    def _add(self, new: list[torch.Tensor]) -> None:
        """Rebuild the optimiser with the new parameters in its ONE parameter group (a group
        per parameter would undo ``foreach``), keeping the state of the old ones and taking a
        state loaded with :meth:`set_state` for the new ones."""
        for param in new:
            self._params[param] = None
        old = self.optimizer
        self.optimizer = self.pt_optim_constructor(list(self._params), **self.pt_optim_args)
        if old is not None:
            self.optimizer.state.update(old.state)
        store = pyro.get_param_store()
        for param in new:
            state = self._state_waiting_to_be_consumed.pop(store.param_name(param), None)
            if state is not None:
                # Pyro's format: the state dict of a one-parameter optimiser
                self.optimizer.state[param] = _cast_state(state["state"].get(0, {}), param)

    def get_state(self) -> dict:
        """The state in Pyro's format: ``{parameter name: one-parameter optimiser state dict}``."""
        if self.optimizer is None:
            return {}
        store = pyro.get_param_store()
        (group,) = self.optimizer.param_groups
        settings = {k: v for k, v in group.items() if k != "params"}
        out = {}
        for param in group["params"]:
            name = store.param_name(param)
            if name is None:
                continue  # a parameter of a cleared param store
            state = self.optimizer.state.get(param)
            out[name] = {"state": {0: dict(state)} if state else {},
                         "param_groups": [{**settings, "params": [0]}]}
        return out


def _cast_state(state: dict, param: torch.Tensor) -> dict:
    """A loaded optimiser state on the parameter's device and (for its floats) dtype, as
    ``torch.optim.Optimizer.load_state_dict`` casts it."""
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and key != "step" and value.is_floating_point():
            value = value.to(dtype=param.dtype, device=param.device)
        out[key] = value
    return out


def JointAdam(optim_args: Mapping[str, object]) -> JointOptim:
    r"""``pyro.optim.Adam`` with one ``torch.optim.Adam`` (``foreach=True``) for all parameters.

    Args:
        optim_args: ``torch.optim.Adam``'s keyword arguments (``lr``, ``betas``, ``eps``, ...).

    Example:
        >>> optim = JointAdam({"lr": 1e-3})
    """
    if not isinstance(optim_args, Mapping):
        raise ValueError("optim_args: expected a dict of torch.optim.Adam's keyword arguments, "
                         f"got {type(optim_args).__name__}")
    allowed = set(inspect.signature(torch.optim.Adam).parameters) - {"params"}
    unknown = sorted(set(optim_args) - allowed)
    if unknown:
        raise ValueError(f"optim_args: {', '.join(map(repr, unknown))} is not an argument of "
                         f"torch.optim.Adam (its arguments: {', '.join(sorted(allowed))})")
    try:  # torch's own range checks (lr >= 0, betas in [0, 1), ...), before any SVI step
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], **optim_args)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"optim_args: {exc}") from None
    return JointOptim(torch.optim.Adam, {"foreach": True, **optim_args})
