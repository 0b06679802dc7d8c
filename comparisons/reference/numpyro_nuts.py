r"""NumPyro's NUTS (JAX, CPU) on the same Bayesian MLP target as :mod:`comparisons.reference.nuts`.

The optional ``jax`` extra (``pip install .[jax]``) installs ``jax`` and ``numpyro``; nothing
else in the toolkit needs them. :func:`~comparisons.reference.nuts.run_nuts` with
``backend="numpyro"`` runs each chain through :func:`sample_chain`, so the chains share the
Pyro backends' seeds, initial values, per-chain cache, worker processes, :class:`NUTSResult` and
``DataTree`` conversion; only the sampler differs.

The target is the negative log joint of :func:`~comparisons.reference.nuts.bnn_potential`,

.. math::
    U(\mathbf{W}, \mathbf{b}) = \frac{l^2}{2}\sum_{w} w^2
    + \frac{\tau}{2}\sum_{n, d}\big(y_{n,d} - f_d(\mathbf{x}_n)\big)^2 + C,
    \qquad C = P\big(\tfrac12\log 2\pi - \log l\big)
    + ND\big(\tfrac12\log 2\pi - \tfrac12\log\tau\big),

with :math:`P` weights and biases, written here with ``jax.numpy`` (:func:`bnn_potential_jax`).
The test suite checks that the two potentials and their gradients agree to 1e-10 in float64 at
random points. NumPyro compiles the whole trajectory (``lax.while_loop``), where Pyro runs each
leapfrog step from Python; ``benchmarks/bench_hmc.py`` measures what that is worth.

Sampler settings follow :func:`run_nuts`: diagonal mass matrix and step size adapted during the
``num_warmup`` iterations (NumPyro's windowed adaptation, as Stan's and Pyro's), the same
``target_accept_prob`` and ``max_tree_depth``, float64 throughout.

References:
    Phan, Pradhan & Jankowiak (2019), "Composable Effects for Flexible and Accelerated
    Probabilistic Programming in NumPyro", arXiv:1912.11554.

Example:
    >>> result = run_nuts(x, y, hidden=(50,), prior_length_scale=1.0, tau=8.7,
    ...                   backend="numpyro", num_processes=2)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from comparisons.inference_data.base import weight_site_names
from vi_dropout.network import ACTIVATIONS, Architecture

__all__ = ["JAX_INSTALL_HINT", "bnn_potential_jax", "require_jax", "sample_chain"]

#: what to install for this backend
JAX_INSTALL_HINT = "pip install 'vi-dropout[jax]' (or: pip install jax numpyro)"

#: XLA flags for one thread per process (set before jax is first imported in a worker)
_ONE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def require_jax():
    """Import ``jax`` and ``numpyro`` with float64 enabled, or raise ``ImportError`` saying what
    to install.

    Returns:
        ``(jax, numpyro)``.
    """
    try:
        import jax
        import numpyro
    except ImportError as err:
        raise ImportError(
            f"the 'numpyro' NUTS backend needs jax and numpyro ({err}); {JAX_INSTALL_HINT}"
        ) from None
    jax.config.update("jax_enable_x64", True)
    return jax, numpyro


def _jax_activation(name: str) -> Callable:
    import jax
    import jax.numpy as jnp

    table = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
             "erf": jax.scipy.special.erf, "identity": lambda t: t}
    if set(table) != set(ACTIVATIONS):  # pragma: no cover - guards a new torch activation
        raise RuntimeError(f"numpyro backend: activations {sorted(ACTIVATIONS)} of "
                           f"vi_dropout.network are not all mapped to jax ({sorted(table)})")
    if name not in table:
        raise ValueError(f"activation must be one of {sorted(table)}, got {name!r}")
    return table[name]


def bnn_potential_jax(
    x: np.ndarray,
    y: np.ndarray,
    architecture: Architecture,
    prior_length_scale: float,
    tau: float,
) -> Callable[[Mapping[str, Any]], Any]:
    r"""The negative log joint of :func:`~comparisons.reference.nuts.bnn_potential` in JAX.

    .. math::
        U(\mathbf{W}, \mathbf{b}) = -\sum_{\text{params } w}\log\mathcal{N}(w; 0, l^{-2})
        - \sum_{n, d}\log\mathcal{N}(y_{n,d}; f_d(\mathbf{x}_n), \tau^{-1}),

    every normalising constant included.

    Args:
        x: ``N x Q`` inputs; y: ``N x D`` targets (model scale), numpy float64.
        architecture: widths and activation; prior_length_scale: :math:`l`; tau: :math:`\tau`.

    Returns:
        ``potential(params) -> scalar`` for a dict with the sites ``layers.{i}.weight``
        (``out x in``) and ``layers.{i}.bias`` (``out``), differentiable with ``jax.grad``.

    Example:
        >>> import jax.numpy as jnp  # doctest: +SKIP
        >>> pot = bnn_potential_jax(np.zeros((4, 1)), np.zeros((4, 1)), Architecture((1, 3, 1)),
        ...                         1.0, 1.0)  # doctest: +SKIP
        >>> params = {"layers.0.weight": jnp.zeros((3, 1)), "layers.0.bias": jnp.zeros(3),
        ...           "layers.1.weight": jnp.zeros((1, 3)), "layers.1.bias": jnp.zeros(1)}
        >>> round(float(pot(params)), 4)  # doctest: +SKIP
        12.8651
    """
    require_jax()
    import jax.numpy as jnp

    names = weight_site_names(architecture)
    num_params = sum(o * q + o for o, q in architecture.layer_shapes)
    l2 = float(prior_length_scale) ** 2
    tau = float(tau)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    const = num_params * (half_log_2pi - math.log(prior_length_scale)) + y.size * (
        half_log_2pi - 0.5 * math.log(tau))
    act = _jax_activation(architecture.activation)
    xj = jnp.asarray(x, dtype=jnp.float64)
    yj = jnp.asarray(y, dtype=jnp.float64)
    num_layers = len(architecture.layer_shapes)

    def potential(params: Mapping[str, Any]):
        h = xj
        for i in range(num_layers):
            h = h @ params[names[2 * i]].T + params[names[2 * i + 1]]
            if i < num_layers - 1:
                h = act(h)
        prior = sum(jnp.sum(jnp.square(params[n])) for n in names)
        return 0.5 * l2 * prior + 0.5 * tau * jnp.sum(jnp.square(yj - h)) + const

    return potential


def _tree_depth(num_steps: np.ndarray) -> np.ndarray:
    """Trajectory doublings of a NUTS iteration with ``num_steps`` leapfrog steps (a tree of depth
    :math:`d` has at most :math:`2^d - 1` steps)."""
    return np.ceil(np.log2(np.asarray(num_steps, dtype=np.float64) + 1.0)).astype(np.int64)


def sample_chain(
    settings: Mapping[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    init: Mapping[str, np.ndarray],
    seed: int,
) -> dict[str, Any]:
    r"""Warm up and sample one NUTS chain with NumPyro (the ``numpyro`` backend of
    :func:`~comparisons.reference.nuts.run_nuts`).

    Args:
        settings: the chain settings of ``run_nuts`` (``widths``, ``activation``,
            ``prior_length_scale``, ``tau``, ``num_warmup``, ``num_samples``,
            ``max_tree_depth``, ``target_accept_prob``, ``dense_mass``).
        x, y: ``N x Q`` inputs and ``N x D`` targets (float64).
        init: site name -> initial value (the same draws the Pyro backends start from).
        seed: the chain's seed (JAX's ``PRNGKey``).

    Returns:
        A dict with ``samples`` (site -> ``draw x ...`` array), ``stats`` (name -> per-draw
        array: step_size, n_steps, tree_depth, diverging, acceptance_rate, energy, lp),
        ``warmup_time_s``, ``sampling_time_s`` and ``warmup_grad_evals``; the warmup time
        includes JAX's compilation.
    """
    if "XLA_FLAGS" not in os.environ and "jax" not in __import__("sys").modules:
        os.environ["XLA_FLAGS"] = _ONE_THREAD_XLA_FLAGS
    jax, _ = require_jax()
    from numpyro.infer import MCMC, NUTS

    s = settings
    arch = Architecture(tuple(s["widths"]), s["activation"])
    potential = bnn_potential_jax(x, y, arch, s["prior_length_scale"], s["tau"])
    kernel = NUTS(potential_fn=potential, max_tree_depth=int(s["max_tree_depth"]),
                  target_accept_prob=float(s["target_accept_prob"]), adapt_step_size=True,
                  adapt_mass_matrix=True, dense_mass=bool(s["dense_mass"]))
    mcmc = MCMC(kernel, num_warmup=int(s["num_warmup"]), num_samples=int(s["num_samples"]),
                num_chains=1, progress_bar=False, jit_model_args=False)
    init_params = {k: jax.numpy.asarray(v, dtype=jax.numpy.float64) for k, v in init.items()}
    key = jax.random.PRNGKey(int(seed) % (2**32))
    t0 = time.perf_counter()
    warmup_steps = 0
    if int(s["num_warmup"]) > 0:
        mcmc.warmup(key, init_params=init_params, collect_warmup=True,
                    extra_fields=("num_steps",))
        warmup_steps = int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())
        key = mcmc.post_warmup_state.rng_key
        init_params = None
    jax.block_until_ready(mcmc.last_state if int(s["num_warmup"]) > 0 else key)
    t1 = time.perf_counter()
    fields = ("diverging", "num_steps", "accept_prob", "energy", "potential_energy",
              "adapt_state.step_size")
    mcmc.run(key, init_params=init_params, extra_fields=fields)
    samples = {k: np.asarray(v, dtype=np.float64) for k, v in mcmc.get_samples().items()}
    t2 = time.perf_counter()
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields().items()}
    n_steps = extra["num_steps"].astype(np.int64)
    stats = {
        "step_size": extra["adapt_state.step_size"].astype(np.float64),
        "n_steps": n_steps,
        "tree_depth": _tree_depth(n_steps),
        "diverging": extra["diverging"].astype(bool),
        "acceptance_rate": extra["accept_prob"].astype(np.float64),
        "energy": extra["energy"].astype(np.float64),
        "lp": -extra["potential_energy"].astype(np.float64),
    }
    return {"samples": samples, "stats": stats, "warmup_time_s": t1 - t0,
            "sampling_time_s": t2 - t1, "warmup_grad_evals": warmup_steps}
