r"""Training one dropout regression network for long: up to a step budget or a stopping rule,
on a CPU or a CUDA GPU, checkpointed and resumable bit for bit.

- :func:`fit_dropout_regressor` trains a :class:`vi_dropout.training.DropoutMLP` Keras-style
  (inverted dropout, Glorot weights, Adam, minibatches reshuffled every epoch) on the
  regularised squared error and returns a :class:`RegressorFit` (the trained
  :class:`~vi_dropout.predict.DropoutMLPParams`, the losses, how and where it stopped).
- :class:`~comparisons.training.stopping.StoppingRule` (defined in
  :mod:`comparisons.training.stopping`, importable from here): stop once the mean loss of the
  last window of steps no longer improves on the best earlier window.
- Checkpoints (:mod:`comparisons.training.checkpoint`) hold the weights, Adam's state, the
  generator's state, the epoch's permutation and position, the step and the loss history;
  :func:`preflight_dropout_regressor` checks the arguments and the checkpoint of a run before
  any training.
- :func:`resolve_device`: ``"cpu"`` or ``"cuda"``, checked.
- The pieces of a step, shared with ``benchmarks/bench_mauna_loa_step.py``:
  :func:`initial_network`, :class:`EpochBatches`, :func:`regularised_mse`, and the loss buffer
  :class:`LossHistory`.

MC dropout draws of the whole function from the trained network (one set of masks per draw for
all query points) are ``fit.params.mc_predict(x, T, shared_masks=True)``
(:func:`vi_dropout.predict.mc_predict`).

Used by :mod:`comparisons.experiments.mauna_loa` (Figure 2 of the paper).

Example:
    >>> x = torch.linspace(-1, 1, 32).unsqueeze(-1); y = torch.sin(3 * x)
    >>> fit = fit_dropout_regressor(x, y, hidden=(16,), activation="relu",
    ...     keep_probs=(1.0, 0.9), reg=1e-4, iterations=20, batch_size=8)
    >>> fit.steps, fit.stopped_by, fit.device
    (20, 'budget', 'cpu')

Why one module of this size: resumable training of one dropout network: checkpoints, the
stopping rule, the device and the loss history, one training job.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from comparisons.training.checkpoint import (
    CheckpointError,
    check_settings,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from comparisons.training.stopping import StoppingRule  # this name stays importable from here
from vi_dropout.network import Architecture
from vi_dropout.predict import DropoutMLPParams
from vi_dropout.training import DropoutMLP
from vi_dropout.validation import check_keep_prob, check_positive, check_positive_int

__all__ = [
    "TRAINER",
    "StoppingRule",
    "RegressorFit",
    "resolve_device",
    "fit_dropout_regressor",
    "preflight_dropout_regressor",
    "LossHistory",
    "initial_network",
    "EpochBatches",
    "regularised_mse",
]

#: the ``trainer`` entry of a checkpoint's settings: the code (and its version) that wrote it
TRAINER = "comparisons.training.dropout_regressor/1"


@dataclass(frozen=True)
class RegressorFit:
    """What :func:`fit_dropout_regressor` returns.

    Attributes:
        params: the trained network (:class:`~vi_dropout.predict.DropoutMLPParams`,
            ``inverted=True``, tensors on the CPU whatever the training device).
        losses: every step's minibatch loss from step 1 on (a resumed run's history included),
            ``(steps,)``.
        stopped_by: ``"budget"`` (``iterations`` steps done) or ``"stopping_rule"``.
        resumed_from: the step of the checkpoint the run continued from, or ``None`` (a fresh
            start).
        train_time_s: training seconds over every call (those before a resume included).
        call_time_s: training seconds of this call.
        device: the device that trained it (``"cpu"``, ``"cuda"``, ...); device_name: e.g. the
            GPU's name (``"cpu"`` on the CPU).
        checkpoint: the checkpoint file, or ``None``.
    """

    params: DropoutMLPParams
    losses: np.ndarray
    stopped_by: str
    resumed_from: int | None
    train_time_s: float
    call_time_s: float
    device: str
    device_name: str
    checkpoint: str | None = None

    @property
    def steps(self) -> int:
        """Minibatch steps taken in all, ``len(losses)``."""
        return len(self.losses)

    @property
    def call_steps(self) -> int:
        """Steps taken by this call."""
        return self.steps - (self.resumed_from or 0)

    @property
    def seconds_per_step(self) -> float:
        """This call's training seconds per step (the whole history's when it took none)."""
        if self.call_steps > 0:
            return self.call_time_s / self.call_steps
        return self.train_time_s / max(1, self.steps)


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, checked: a CPU or a CUDA device that this torch can use.

    Raises:
        ValueError: not a device name, another kind of device, or CUDA asked for where
            ``torch.cuda.is_available()`` is false.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but torch.cuda.is_available() is "
                         f"False on this machine (torch {torch.__version__}): use device 'cpu'")
    return dev


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return "cpu"


def fit_dropout_regressor(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    hidden: Sequence[int],
    activation: str,
    keep_probs: Sequence[float],
    reg: float,
    iterations: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
    device: str | torch.device = "cpu",
    stop: StoppingRule | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: float = 300.0,
    checkpoint_every_steps: int | None = None,
    resume: bool = False,
    fused_adam: bool = False,
) -> RegressorFit:
    r"""Train one dropout MLP (Keras-style) up to a step budget or a stopping rule, on a CPU or
    a GPU, checkpointed and resumable bit for bit.

    Minimises :math:`\frac{1}{|\mathcal{B}|D}\sum_{n\in\mathcal{B}}\|\mathbf{y}_n -
    \hat{\mathbf{y}}_n\|^2 + \lambda\sum_i\|\mathbf{W}_i\|_F^2` with inverted dropout on every
    layer's input (:class:`vi_dropout.training.DropoutMLP`), Glorot-uniform weights and
    zero biases, Adam (``eps=1e-7``), minibatches drawn in order from a fresh permutation of the
    data every epoch (the last one of an epoch may be smaller). A plain module with autograd:
    for a 4 x 1024 network the matrix products dominate (see
    ``benchmarks/bench_mauna_loa_step.py``), and it ran as fast as
    :func:`vi_dropout.train_batched` with one network while allowing an exact step count.

    It shares the model and the loss of :func:`vi_dropout.training.train_sequential` but not its
    loop: that trainer runs whole epochs and takes each epoch's masks from per-layer drop
    streams (only the dropped positions are drawn), while this one counts steps and draws one
    dense Bernoulli block per step, input column included. The two random-number streams
    differ, so the numbers of this experiment come from this one.

    Random numbers: on the CPU, ``g = torch.Generator().manual_seed(seed)`` draws the initial
    weights (:meth:`~vi_dropout.network.Architecture.init_params`), then per epoch a permutation
    (drawn just before the epoch's first minibatch) and per step one Bernoulli block of masks.
    On CUDA the initial weights are the same (drawn on the CPU from the same generator), but the
    permutations and masks come from a CUDA generator seeded with ``seed``: a different stream
    (and other matrix-product kernels), so CPU and CUDA runs give different numbers; each is
    reproducible on its own device.

    Checkpoints (with ``checkpoint``): the weights, Adam's state, the generator's state, the
    current epoch's permutation and position in it, the step, the loss history and the
    cumulative training time, written atomically
    (:func:`comparisons.training.checkpoint.save_checkpoint`) whenever ``checkpoint_every``
    seconds have passed since the last one or the step is a multiple of
    ``checkpoint_every_steps``, and at the end. With ``resume`` an existing checkpoint is
    verified (checksum; settings: architecture, activation, keep probabilities, ``reg``,
    ``batch_size``, ``lr``, ``seed``, dtype, device type and the data's SHA-256 must be those
    of this call, the step budget and the stopping rule may change) and the run continues from
    it: ``N`` steps in one go and ``N/2 + N/2`` with a resume (or a kill) in between give the
    same weights and losses, bit for bit. Without a checkpoint file, ``resume`` starts afresh.

    Args:
        x: inputs ``N x Q`` (its dtype is the network's).
        y: targets ``N x D``.
        hidden: hidden widths; activation: their activation.
        keep_probs: keep probability of each weight layer's input (``len(hidden) + 1`` values).
        reg: :math:`\lambda \ge 0`.
        iterations: the step budget ``>= 1`` (steps in all, a resumed history included).
        batch_size, lr: minibatch size and Adam learning rate.
        seed: the generator's seed.
        progress: tqdm bar over steps.
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...): where the data, the network, the
            optimizer and the mask generator live.
        stop: a :class:`StoppingRule`, or ``None`` (the budget alone).
        checkpoint: the checkpoint file, or ``None`` (no checkpoints).
        checkpoint_every: seconds between checkpoints (``> 0``).
        checkpoint_every_steps: also a checkpoint every this many steps (``None``: by time
            only).
        resume: continue from ``checkpoint`` if it exists.
        fused_adam: ``torch.optim.Adam(fused=True)``: the same update in one fused kernel
            (on one CPU thread about 2.5 ms instead of 12 ms per step for the 4 x 1024 network),
            rounded differently in the last bits, so its numbers differ from the default's.

    Returns:
        :class:`RegressorFit`.

    Raises:
        FloatingPointError: the loss became NaN or infinite (the step is reported).
        ValueError: a bad argument; CUDA not available; ``resume`` with a checkpoint written
            with other settings (:class:`~comparisons.training.checkpoint.CheckpointMismatch`,
            naming them) or a damaged one
            (:class:`~comparisons.training.checkpoint.CheckpointError`, naming the file);
            or, without ``resume``, a checkpoint of an unfinished run in the way (resume it or
            delete it).

    Example:
        >>> x = torch.linspace(-1, 1, 32).unsqueeze(-1); y = torch.sin(3 * x)
        >>> fit = fit_dropout_regressor(x, y, hidden=(16,), activation="tanh",
        ...     keep_probs=(1.0, 0.9), reg=0.0, iterations=400, batch_size=8, lr=1e-2,
        ...     stop=StoppingRule(window=50, tolerance=0.05))
        >>> fit.stopped_by, fit.steps < 400
        ('stopping_rule', True)
    """
    job = _checked_job(x, y, hidden=hidden, activation=activation, keep_probs=keep_probs,
                       reg=reg, iterations=iterations, batch_size=batch_size, lr=lr, seed=seed,
                       device=device, stop=stop, checkpoint=checkpoint,
                       checkpoint_every=checkpoint_every,
                       checkpoint_every_steps=checkpoint_every_steps, fused_adam=fused_adam)
    state = _checkpoint_preflight(job["checkpoint"], resume, job["identity"], job["iterations"])
    run = _TrainingRun(x, y, job, activation=activation, seed=seed, fused_adam=fused_adam)
    if state is not None:
        run.restore(state)
    return run.train(stop, checkpoint_every=checkpoint_every,
                     checkpoint_every_steps=checkpoint_every_steps, progress=progress)


def preflight_dropout_regressor(x: torch.Tensor, y: torch.Tensor, *, resume: bool = False,
                                progress: bool = False, **options) -> None:
    """Check the arguments of :func:`fit_dropout_regressor` and the checkpoint it would resume
    from (or refuse to replace), without training: raise what it would raise before its first
    step.

    Args:
        x, y, resume: as for :func:`fit_dropout_regressor`; progress: ignored.
        options: :func:`fit_dropout_regressor`'s other keyword arguments.

    Raises:
        ValueError: a bad argument, CUDA not available, or a checkpoint that cannot be resumed
            (:class:`~comparisons.training.checkpoint.CheckpointMismatch`,
            :class:`~comparisons.training.checkpoint.CheckpointError`) or, without ``resume``,
            an unfinished run's checkpoint in the way.

    Example:
        >>> x = torch.zeros(4, 1)
        >>> preflight_dropout_regressor(x, x, hidden=(8,), activation="relu",
        ...                             keep_probs=(1.0,), reg=0.0, iterations=5)
        Traceback (most recent call last):
            ...
        ValueError: keep_probs must hold one value per weight layer (2), got 1: [1.0]
    """
    job = _checked_job(x, y, **options)
    _checkpoint_preflight(job["checkpoint"], resume, job["identity"], job["iterations"])


class _TrainingRun:
    """The state of one :func:`fit_dropout_regressor` call: the network, Adam, the generator,
    the minibatches, the loss history and the clock; restored from a checkpoint state, saved
    to one, trained step by step. The order of its random draws is the one documented there."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, job: dict, *, activation: str,
                 seed: int, fused_adam: bool):
        widths, kps, dev, dtype = job["widths"], job["keep_probs"], job["device"], x.dtype
        self.job, self.activation, self.device = job, activation, dev
        g = torch.Generator().manual_seed(int(seed))
        self.net = initial_network(widths, kps, activation, g, dtype).to(dev)
        if dev.type != "cpu":  # the CPU drew the initial weights; masks and batches on the device
            g = torch.Generator(device=dev).manual_seed(int(seed))
        self.generator = g
        self.x, self.y = x.to(dev), y.to(dtype).to(dev)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=job["lr"], eps=1e-7,
                                    fused=True if fused_adam else None)
        self.col_keep = torch.tensor([kp for kp, w in zip(kps, widths[:-1]) for _ in range(w)],
                                     dtype=dtype, device=dev)
        self.batches = EpochBatches(x.shape[0], job["batch_size"], g)
        self.start, self.done_before_s, self.stopped_by, self.resumed_from = 0, 0.0, "budget", None
        # on a GPU, fetch the losses every few steps (each fetch waits for the device)
        self.losses = LossHistory(np.empty(0), flush_every=1 if dev.type == "cpu" else 50)
        self.t_begin = time.perf_counter()

    def restore(self, state: dict) -> None:
        """Continue from a verified checkpoint state (:func:`_load_training_state`)."""
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.batches.load_state(state["batches"])
        history = state["losses"].numpy().astype(np.float64)
        self.start = self.resumed_from = len(history)
        self.done_before_s = float(state["train_time_s"])
        self.losses = LossHistory(history, flush_every=self.losses.flush_every)

    def save(self, step: int, finished: bool) -> None:
        """Write the checkpoint of the state after ``step`` steps."""
        elapsed = self.done_before_s + time.perf_counter() - self.t_begin
        state = {
            "model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
            "generator": self.generator.get_state(), "batches": self.batches.state(),
            "losses": torch.from_numpy(self.losses.values(step).copy()), "train_time_s": elapsed,
        }
        meta = {"settings": self.job["identity"], "step": step, "budget": self.job["iterations"],
                "finished": finished, "stopped_by": self.stopped_by if finished else None}
        save_checkpoint(self.job["checkpoint"], state, meta=meta)

    def step(self, step: int) -> None:
        """Take minibatch step ``step + 1``: indices, masks, loss, Adam's update."""
        idx = self.batches.next()
        z = torch.bernoulli(self.col_keep.expand(len(idx), -1), generator=self.generator)
        loss = regularised_mse(self.net, self.net(self.x[idx], z), self.y[idx], self.job["reg"])
        if self.device.type == "cpu" and not torch.isfinite(loss):
            raise FloatingPointError(
                f"training diverged at step {step}: loss {float(loss)} (try a smaller lr)"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.losses.put(loss)

    def train(self, stop: StoppingRule | None, *, checkpoint_every: float,
              checkpoint_every_steps: int | None, progress: bool) -> RegressorFit:
        """Train from the current step to the budget or the stopping rule, checkpointing on
        the way and at the end; the :class:`RegressorFit`."""
        ckpt, iterations, start = self.job["checkpoint"], self.job["iterations"], self.start
        self.t_begin = last_save = time.perf_counter()
        step = start
        if stop is not None and stop.should_stop(self.losses.values(step)):
            self.stopped_by = "stopping_rule"
        bar = tqdm(total=iterations, initial=min(start, iterations), disable=not progress,
                   desc=f"train {self.activation}", leave=False)
        while self.stopped_by == "budget" and step < iterations:
            self.step(step)
            step += 1
            bar.update(1)
            if stop is not None and step % stop.window == 0:
                if stop.should_stop(self.losses.values(step)):
                    self.stopped_by = "stopping_rule"
                    break
            if ckpt is not None and (
                    (checkpoint_every_steps is not None and step % checkpoint_every_steps == 0)
                    or time.perf_counter() - last_save >= checkpoint_every):
                self.save(step, finished=False)
                last_save = time.perf_counter()
        bar.close()
        all_losses = self.losses.values(step).copy()
        call_s = time.perf_counter() - self.t_begin
        if ckpt is not None and (step > start or self.resumed_from is None
                                 or self.stopped_by != "budget"):
            self.save(step, finished=True)
        return self._result(all_losses, call_s)

    def _result(self, losses: np.ndarray, call_s: float) -> RegressorFit:
        params = DropoutMLPParams(
            tuple(lin.weight.detach().clone().cpu() for lin in self.net.linears),
            tuple(lin.bias.detach().clone().cpu() for lin in self.net.linears),
            keep_probs=self.job["keep_probs"],
            activation=self.activation,
            inverted=True,
        )
        ckpt, dev = self.job["checkpoint"], self.device
        return RegressorFit(params, losses, self.stopped_by, self.resumed_from,
                            self.done_before_s + call_s, call_s, dev.type,
                            _device_name(dev), None if ckpt is None else str(ckpt))


def _checked_job(x, y, *, hidden, activation, keep_probs, reg, iterations, batch_size=128,
                 lr=1e-3, seed=0, device="cpu", stop=None, checkpoint=None,
                 checkpoint_every=300.0, checkpoint_every_steps=None, fused_adam=False) -> dict:
    """Check :func:`fit_dropout_regressor`'s arguments; the checked values, the device, the
    checkpoint path and the settings a checkpoint must match (``identity``)."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be N x Q and N x D, got {tuple(x.shape)}, {tuple(y.shape)}")
    iterations = check_positive_int(iterations, "iterations")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    reg = float(reg)
    if not (math.isfinite(reg) and reg >= 0):
        raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
    widths = Architecture((x.shape[1], *tuple(hidden), y.shape[1]), activation).widths
    if len(keep_probs) != len(widths) - 1:
        raise ValueError(
            f"keep_probs must hold one value per weight layer ({len(widths) - 1}), got "
            f"{len(keep_probs)}: {list(keep_probs)!r}"
        )
    kps = tuple(check_keep_prob(k, f"keep_probs[{i}]") for i, k in enumerate(keep_probs))
    if stop is not None and not isinstance(stop, StoppingRule):
        raise ValueError(f"stop must be a StoppingRule or None, got {type(stop).__name__}")
    check_positive(checkpoint_every, "checkpoint_every")
    if checkpoint_every_steps is not None:
        check_positive_int(checkpoint_every_steps, "checkpoint_every_steps")
    dev = resolve_device(device)
    dtype = x.dtype
    y = y.to(dtype)
    identity = {
        "trainer": TRAINER, "widths": list(widths), "activation": activation,
        "keep_probs": list(kps), "reg": reg, "batch_size": batch_size,
        "lr": lr, "seed": int(seed), "dtype": str(dtype).replace("torch.", ""),
        "device": dev.type, "fused_adam": bool(fused_adam), "num_data": int(x.shape[0]),
        "data_sha256": _data_digest(x, y),
    }
    return {"widths": widths, "keep_probs": kps, "reg": reg, "device": dev,
            "identity": identity, "iterations": iterations, "batch_size": batch_size, "lr": lr,
            "checkpoint": None if checkpoint is None else Path(checkpoint)}


def _checkpoint_preflight(ckpt: Path | None, resume: bool, identity: dict,
                          budget: int) -> dict | None:
    """The verified state to resume from (``resume`` and a checkpoint at ``ckpt``), else
    ``None``; without ``resume``, refuse to replace an unfinished run's checkpoint; refuse a
    checkpoint already past the step budget (its report would claim ``budget`` steps)."""
    if ckpt is None or not ckpt.exists():
        return None
    if not resume:
        _refuse_unfinished(ckpt)
        return None
    state = _load_training_state(ckpt, identity)
    done = len(state["losses"])
    if done > budget:
        raise ValueError(
            f"--iterations {budget}: checkpoint {ckpt} is already at step {done}, past that "
            f"budget; resume with --iterations {done} or more, or start a new run in another "
            "--out / --checkpoint-dir")
    return state


def _data_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 of the training data (shapes, dtype and values)."""
    h = hashlib.sha256()
    for t in (x, y):
        a = t.detach().cpu().contiguous()
        h.update(f"{tuple(a.shape)}{a.dtype};".encode())
        h.update(a.numpy().tobytes())
    return h.hexdigest()


def _refuse_unfinished(ckpt: Path) -> None:
    """Raise ``ValueError`` if ``ckpt`` holds a run, finished or not: its hours of training are
    not replaced by a fresh run without ``resume`` (a damaged or unreadable checkpoint is not a
    result: it is replaced, with a warning)."""
    try:
        meta = read_checkpoint_meta(ckpt)
        load_checkpoint(ckpt, map_location="cpu")  # the payload verified against its SHA-256
    except (OSError, CheckpointError) as exc:
        warnings.warn(f"replacing the damaged checkpoint {ckpt} ({exc})", RuntimeWarning,
                      stacklevel=3)
        return
    if meta.get("finished") is False:
        raise ValueError(
            f"checkpoint {ckpt} holds an unfinished run (step {meta.get('step')} of "
            f"{meta.get('budget')}): resume it (--resume) or delete it to start again"
        )
    raise ValueError(
        f"checkpoint {ckpt} holds a finished run (step {meta.get('step')}): --resume reuses it "
        "(or extends it with a larger --iterations); delete it, or choose another --out / "
        "--checkpoint-dir, to train again")


def _load_training_state(ckpt: Path, identity: dict) -> dict:
    """The verified state of ``ckpt``: header settings equal to ``identity``, checksum, keys."""
    meta = read_checkpoint_meta(ckpt)
    if not isinstance(meta.get("settings"), dict):
        raise CheckpointError(ckpt, "its header holds no training settings")
    check_settings(ckpt, meta["settings"], identity)
    state = load_checkpoint(ckpt, map_location="cpu")
    missing = [k for k in ("model", "optimizer", "generator", "batches", "losses",
                           "train_time_s") if k not in state]
    if missing:
        raise CheckpointError(ckpt, f"it lacks {missing}")
    if len(state["losses"]) != meta.get("step"):
        raise CheckpointError(ckpt, f"it holds {len(state['losses'])} losses for step "
                                    f"{meta.get('step')}")
    return state


class LossHistory:
    """The per-step losses (float64, on the host, in a buffer that grows as needed). On a GPU
    the new losses wait on the device and are fetched ``flush_every`` at a time (each fetch
    waits for the device), and checked for NaN / infinity then."""

    def __init__(self, history: np.ndarray, flush_every: int):
        self.flush_every = flush_every
        self.buffer = np.empty(max(1024, 2 * len(history)))
        self.count = len(history)
        self.buffer[: self.count] = history
        self.pending: list[torch.Tensor] = []

    def put(self, loss: torch.Tensor) -> None:
        """Append one step's loss (a 0-d tensor)."""
        if self.flush_every == 1:
            self._extend(np.array([loss.item()]))
        else:
            self.pending.append(loss.detach())
            if len(self.pending) >= self.flush_every:
                self.flush()

    def flush(self) -> None:
        """Fetch the pending losses; ``FloatingPointError`` at the first NaN or infinity."""
        if not self.pending:
            return
        values = torch.stack(self.pending).double().cpu().numpy()
        self.pending = []
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise FloatingPointError(
                f"training diverged at step {self.count + int(bad[0])}: loss "
                f"{values[bad[0]]} (try a smaller lr)"
            )
        self._extend(values)

    def values(self, step: int) -> np.ndarray:
        """The first ``step`` losses (a view; all pending ones fetched first)."""
        self.flush()
        assert self.count == step, (self.count, step)
        return self.buffer[:step]

    def _extend(self, values: np.ndarray) -> None:
        need = self.count + len(values)
        if need > len(self.buffer):
            grown = np.empty(max(need, 2 * len(self.buffer)))
            grown[: self.count] = self.buffer[: self.count]
            self.buffer = grown
        self.buffer[self.count : need] = values
        self.count = need


def initial_network(widths, keep_probs, activation, generator, dtype) -> DropoutMLP:
    """A :class:`DropoutMLP` holding :meth:`Architecture.init_params`' weights (drawn from
    ``generator``: Glorot-uniform weights, zero biases)."""
    ws, bs = Architecture(widths, activation).init_params(generator=generator, dtype=dtype)
    net = DropoutMLP(widths, keep_probs, activation).to(dtype)
    with torch.no_grad():
        for lin, w, b in zip(net.linears, ws, bs):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    return net


class EpochBatches:
    """Row indices of minibatches, endlessly, with an explicit state (for checkpoints): a fresh
    ``torch.randperm`` at the start of every epoch (drawn lazily, just before the epoch's first
    minibatch), cut in order into pieces of ``batch_size`` (the last piece of an epoch may be
    smaller). The state is the current permutation and the position in it."""

    def __init__(self, num_data: int, batch_size: int, generator: torch.Generator):
        self.num_data, self.batch_size, self.generator = num_data, batch_size, generator
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def next(self) -> torch.Tensor:
        """The next minibatch's row indices (on the generator's device)."""
        if self.perm is None or self.pos >= self.num_data:
            g = self.generator
            if g.device.type == "cpu":
                self.perm = torch.randperm(self.num_data, generator=g)
            else:
                self.perm = torch.randperm(self.num_data, generator=g, device=g.device)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state(self) -> dict:
        """``{"perm": current permutation (CPU) or None, "pos": next position}``."""
        return {"perm": None if self.perm is None else self.perm.cpu(), "pos": int(self.pos)}

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`state`'s output."""
        perm = state["perm"]
        self.perm = None if perm is None else perm.to(self.generator.device)
        self.pos = int(state["pos"])


def regularised_mse(net: DropoutMLP, out: torch.Tensor, y: torch.Tensor, reg: float):
    r""":math:`\frac{1}{|\mathcal{B}|D}\sum\|\mathbf{y}_n - \hat{\mathbf{y}}_n\|^2 + \lambda
    \sum_i\|\mathbf{W}_i\|_F^2` (the penalty is left out, not added as 0, when ``reg == 0``)."""
    loss = torch.nn.functional.mse_loss(out, y)
    if reg > 0:
        loss = loss + reg * sum(lin.weight.square().sum() for lin in net.linears)
    return loss
