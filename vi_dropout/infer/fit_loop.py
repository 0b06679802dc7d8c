r"""The fitting loop that the ELBO objectives share (:func:`vi_dropout.infer.concrete.fit_concrete`,
:func:`vi_dropout.infer.mean_field.fit_mean_field`,
:func:`vi_dropout.infer.module_concrete.fit_module_concrete`): one network or ``E`` independent
MLPs in one batched computation, full batch or minibatches, with the learned parameters checked against
their bounds and a failing network named while the others go on.

The random-number contract: network ``e`` owns ``torch.Generator().manual_seed(seed[e])`` and
draws from it, in this order, its initial parameters (when its objective is built), then per
epoch a permutation of the rows (:func:`minibatch_rows`) and per step its masks / noise (the
objective's ``negative_elbo_unchecked``). So network ``e`` of a batched fit reproduces the single
fit with ``seed[e]`` up to floating-point rounding, whatever the other networks are (they share
nothing; Adam is elementwise).

Example:
    >>> import torch
    >>> gens = network_generators([torch.Generator().manual_seed(s) for s in (0, 1)], 2)
    >>> [rows.shape for rows in minibatch_rows(5, 2, 3, gens)]
    [torch.Size([2, 2]), torch.Size([2, 2]), torch.Size([2, 1])]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from vi_dropout.inputs import Inputs, float_dtype, take
from vi_dropout.inputs import batch_size as batch_size_of
from vi_dropout.network import check_data
from vi_dropout.validation import check_finite, check_positive_int

__all__ = [
    "TAU_BOUND",
    "minibatch_rows",
    "network_generators",
    "initial_params",
    "draw_in_chunks",
    "network_picker",
    "as_networks",
    "note_failures",
    "run_fit_loop",
]

#: a learned tau (or theta) outside ``[TAU_BOUND, 1 / TAU_BOUND]`` stops a fit.
TAU_BOUND = 1e-10

#: ``problems(objective, step) -> [None or message per network]``: each network's first learned
#: parameter out of its bounds
Problems = Callable[[torch.nn.Module, int], list]


def network_generators(generator, num_networks: int | None):
    """The random streams of one network (a ``torch.Generator`` or None) or of ``E =
    num_networks`` (a list of ``E`` generators, or ``E`` Nones), checked: network ``e`` draws
    only from its own, so it reproduces a single fit with that generator.

    Example:
        >>> network_generators(None, 2)
        [None, None]
    """
    if num_networks is None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got "
                             f"{type(generator).__name__}")
        return generator
    if generator is None:
        return [None] * num_networks
    if isinstance(generator, torch.Generator) or len(generator) != num_networks:
        raise ValueError(f"generator must be a sequence of {num_networks} torch.Generator (one "
                         f"per network) for num_networks={num_networks}")
    return list(generator)


def initial_params(architecture, generators, num_networks: int | None, dtype,
                   weights: Sequence[torch.Tensor] | None = None,
                   biases: Sequence[torch.Tensor] | None = None
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The weights and biases an ELBO objective starts from: ``weights`` and ``biases`` as given,
    or Glorot-uniform (:meth:`~vi_dropout.network.Architecture.init_params`) with network ``e``
    drawing from its own generator (the random contract above), checked against the
    architecture.

    Args:
        architecture: the :class:`~vi_dropout.network.Architecture`.
        generators: what :func:`network_generators` returned for ``num_networks``.
        num_networks: ``E`` batched networks (each tensor gets a leading ``E`` dim), or ``None``
            for one.
        dtype: the dtype of drawn parameters.
        weights, biases: per layer ``[E x] out x in`` and ``[E x] out``; either one ``None``
            draws both and keeps the one given.

    Returns:
        ``(weights, biases)``, one tensor per layer each.

    Raises:
        ValueError: naming the layer and the expected and given shapes.

    Example:
        >>> from vi_dropout.network import Architecture
        >>> ws, bs = initial_params(Architecture((3, 5, 1)), [None, None], 2, torch.float64)
        >>> [tuple(w.shape) for w in ws], [tuple(b.shape) for b in bs]
        ([(2, 5, 3), (2, 1, 5)], [(2, 5), (2, 1)])
    """
    shape = () if num_networks is None else (num_networks,)
    if weights is None or biases is None:
        if num_networks is None:
            w0, b0 = architecture.init_params(generator=generators, dtype=dtype)
        else:  # each network from its own generator: network e alone gives the same draws
            inits = [architecture.init_params(generator=g, dtype=dtype) for g in generators]
            w0 = [torch.stack(ws) for ws in zip(*(w for w, _ in inits))]
            b0 = [torch.stack(bs) for bs in zip(*(b for _, b in inits))]
        weights = w0 if weights is None else weights
        biases = b0 if biases is None else biases
    n_layers = architecture.num_layers
    if len(weights) != n_layers or len(biases) != n_layers:
        raise ValueError(f"weights and biases must have {n_layers} entries (one per layer)")
    for i, ((out, inp), w, b) in enumerate(zip(architecture.layer_shapes, weights, biases)):
        if tuple(w.shape) != shape + (out, inp) or tuple(b.shape) != shape + (out,):
            raise ValueError(
                f"layer {i}: expected weights[{i}] of shape {shape + (out, inp)} and "
                f"biases[{i}] of shape {shape + (out,)}, got {tuple(w.shape)} and "
                f"{tuple(b.shape)}")
    return list(weights), list(biases)


def draw_in_chunks(architecture, x: torch.Tensor, num_samples: int, max_rows: int,
                   draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """``num_samples`` function draws of an objective's network at ``x``, ``draw(t)`` making
    ``t`` of them (``t x N x D``) per pass, with at most ``max_rows`` rows (draws x points) per
    pass (at least one draw), the arguments checked: the ``predict`` of the ELBO objectives.

    Args:
        architecture: the network's :class:`~vi_dropout.network.Architecture`.
        x: ``N x Q`` inputs (finite).
        num_samples: :math:`T`, a positive int.
        max_rows: a positive int.
        draw: ``t -> t x N x D`` draws, consuming the caller's random stream in pass order.

    Returns:
        ``T x N x D``: the passes' draws, in order.

    Example:
        >>> from vi_dropout.network import Architecture
        >>> x = torch.zeros(4, 1)
        >>> draw_in_chunks(Architecture((1, 1)), x, 5, 8, lambda t: torch.zeros(t, 4, 1)).shape
        torch.Size([5, 4, 1])
    """
    total = check_positive_int(num_samples, "num_samples")
    max_rows = check_positive_int(max_rows, "max_rows")
    check_finite(x, "x")
    if x.dim() != 2 or x.shape[-1] != architecture.in_features:
        raise ValueError(f"x must have shape N x {architecture.in_features}, got "
                         f"{tuple(x.shape)}")
    chunk = max(1, max_rows // x.shape[0])
    return torch.cat([draw(min(chunk, total - start)) for start in range(0, total, chunk)])


def network_picker(network: int | None, num_networks: int | None):
    """``tensor -> tensor`` selecting network ``network`` of ``E = num_networks`` batched ones
    (the identity for a single network), checked.

    Example:
        >>> network_picker(1, 3)(torch.arange(3)).item()
        1
    """
    if (num_networks is None) != (network is None):
        raise ValueError("network must name one of the num_networks networks (and only then)")
    if network is None:
        return lambda t: t
    if not 0 <= network < num_networks:
        raise ValueError(f"network must be in 0..{num_networks - 1}, got {network}")
    return lambda t: t[network]


def minibatch_rows(n: int, batch_size: int | None, steps: int, gens: Sequence):
    """Row indices of each step of a minibatch loop over ``n`` rows: ``None`` (all rows) for
    full batch, else epochs of a fresh permutation per network (from that network's generator)
    cut into ``ceil(n / batch_size)`` batches, the last one smaller; yields one ``E x B`` index
    tensor per step (``E = len(gens)``).

    Example:
        >>> [r.tolist() for r in minibatch_rows(5, 2, 3, [torch.Generator().manual_seed(0)])]
        [[[4, 0]], [[1, 3]], [[2]]]
    """
    if batch_size is None or batch_size >= n:
        for _ in range(steps):
            yield None
        return
    done = 0
    while done < steps:
        perm = torch.stack([torch.randperm(n, generator=g) for g in gens])
        for start in range(0, n, batch_size):
            if done == steps:
                return
            yield perm[:, start:start + batch_size]
            done += 1


def as_networks(x: torch.Tensor, y: torch.Tensor, seed):
    """``(x, y, seeds, batched)``: one network (an int seed; ``x`` ``N x Q``) or ``E`` (a
    sequence of ``E`` seeds; ``x`` ``N x Q`` shared or ``E x N x Q``), checked.

    Example:
        >>> x, y, seeds, batched = as_networks(torch.zeros(4, 2), torch.zeros(4, 1), [3, 4])
        >>> tuple(x.shape), seeds, batched
        ((2, 4, 2), [3, 4], True)
    """
    batched = isinstance(seed, Sequence)
    seeds = [int(s) for s in seed] if batched else [int(seed)]
    if not seeds:
        raise ValueError("seed must be an int or a non-empty sequence of ints (one per network)")
    check_finite(x, "x")
    if x.dim() == 2 and batched:
        x = x.expand(len(seeds), *x.shape)
        y = y.expand(len(seeds), *y.shape) if isinstance(y, torch.Tensor) and y.dim() == 2 else y
    if x.dim() != (3 if batched else 2):
        raise ValueError(f"x must have shape {'E x ' if batched else ''}N x Q"
                         f"{' (or N x Q shared by the E networks)' if batched else ''}, got "
                         f"{tuple(x.shape)}")
    if batched and x.shape[0] != len(seeds):
        raise ValueError(f"x holds {x.shape[0]} networks' data but seed names {len(seeds)}")
    check_data(x, y)
    if y.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"y must have shape {tuple(x.shape[:-1])} x D, got {tuple(y.shape)}")
    return x, y, seeds, batched


def note_failures(problems: Problems, objective, step: int, failures: list,
                  loss: torch.Tensor | None, batched: bool) -> None:
    """Record each network's first problem in ``failures``: ``problems(objective, step)``, or a
    non-finite entry of ``loss``; with one network (``batched`` False), raise it as a
    ``ValueError``."""
    for e, problem in enumerate(problems(objective, step)):
        if (problem is None and loss is not None
                and not math.isfinite(float(loss.detach().reshape(-1)[e]))):
            problem = f"the negative ELBO became non-finite at step {step}"
        if problem is not None and failures[e] is None:
            failures[e] = problem
    if not batched and failures[0] is not None:
        raise ValueError(failures[0])


def run_fit_loop(objective, opt: torch.optim.Optimizer, loss_of, x: Inputs,
                 y: torch.Tensor, gens: list, batched: bool, *, steps: int,
                 batch_size: int | None, check_every: int, problems: Problems,
                 after_step: Callable[[], None] | None = None):
    """Adam (or any ``opt``) on ``loss_of(xb, yb, n)`` (one loss per network, ``E`` or a
    scalar) for ``steps`` steps over minibatches of ``batch_size`` rows (:func:`minibatch_rows`,
    from the networks' generators ``gens``), the networks summed so each gets its own gradient.
    ``x`` is ``E x N x Q`` for ``E`` batched MLPs, or for one network anything it takes (a
    tensor, a tuple or a dict of tensors, batch first: :mod:`vi_dropout.inputs`).

    A non-finite loss is caught at every step, the learned parameters every ``check_every``
    steps and after the last (:func:`note_failures`); ``after_step`` runs after every
    optimiser step (e.g. a projection).

    Returns:
        ``(losses, failures)``: ``steps x E`` (``steps`` for one network) and per network
        ``None`` or the first problem (one network: raises instead).
    """
    losses = torch.empty((steps, len(gens)) if batched else (steps,),
                         dtype=x.dtype if batched else float_dtype(x, torch.float64))
    failures: list[str | None] = [None] * len(gens)
    n = x.shape[-2] if batched else batch_size_of(x)
    nets = torch.arange(len(gens))[:, None]
    for step, rows in enumerate(minibatch_rows(n, batch_size, steps, gens)):
        if rows is None:
            xb, yb = x, y
        else:
            xb, yb = (x[nets, rows], y[nets, rows]) if batched else (take(x, rows[0]), y[rows[0]])
        opt.zero_grad()
        loss = loss_of(xb, yb, n)
        if not bool(torch.isfinite(loss).all()):
            note_failures(problems, objective, step, failures, loss, batched)
        loss.sum().backward()
        opt.step()
        if after_step is not None:
            after_step()
        losses[step] = loss.detach()
        if (step + 1) % check_every == 0 or step + 1 == steps:
            note_failures(problems, objective, step + 1, failures, None, batched)
    return losses, failures
