"""The dropout-network trainer: seeded, checkpoints, bit-for-bit resume (also after a SIGKILL
and on CUDA), refusals of other settings and damaged files, the stopping rule, the loss buffer
of the GPU path and devices (whole file < 30 s; the SIGKILL test spawns a process). The MC
function draws of the trained network (``mc_predict(..., shared_masks=True)``) are tested in
``tests/vi_dropout/test_predict.py``."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from comparisons.training.checkpoint import (
    CheckpointError,
    CheckpointMismatch,
    read_checkpoint_meta,
)
from comparisons.training.dropout_regressor import (
    TRAINER,
    LossHistory,
    StoppingRule,
    fit_dropout_regressor,
    preflight_dropout_regressor,
    resolve_device,
)

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[3]

#: a tiny trainer set-up: 50 rows in minibatches of 8 (7 per epoch, the last of 2 rows)
TRAIN_KW = dict(hidden=(16, 16), activation="relu", keep_probs=(1.0, 0.8, 0.8), reg=1e-4,
                batch_size=8, lr=1e-2, seed=3)


def _xy(dtype=torch.float32):
    x = torch.linspace(-1, 1, 50, dtype=dtype).unsqueeze(-1)
    return x, torch.sin(3 * x)


def _same_fit(a, b):
    return (all(torch.equal(u, v) for u, v in zip(a.params.weights, b.params.weights))
            and all(torch.equal(u, v) for u, v in zip(a.params.biases, b.params.biases))
            and np.array_equal(a.losses, b.losses))


def test_trainer_is_seeded_and_reduces_the_loss():
    x = torch.linspace(-1.5, 1.5, 64).unsqueeze(-1)
    y = torch.sin(2 * x)
    kw = dict(hidden=(32,), activation="tanh", keep_probs=(1.0, 0.9), reg=1e-6,
              iterations=300, batch_size=16, lr=1e-2, seed=3)
    fit1, fit2 = fit_dropout_regressor(x, y, **kw), fit_dropout_regressor(x, y, **kw)
    p1, l1, p2, l2 = fit1.params, fit1.losses, fit2.params, fit2.losses
    np.testing.assert_array_equal(l1, l2)
    assert all(torch.equal(a, b) for a, b in zip(p1.weights, p2.weights))
    # the weight-averaged prediction explains > 90% of the variance of sin(2x) (measured: 94%)
    with torch.no_grad():
        mse = float((p1.standard_predict(x) - y).square().mean())
    assert mse < 0.1 * float(y.var())
    assert l1[-50:].mean() < l1[:50].mean()
    assert p1.inverted and p1.keep_probs == (1.0, 0.9)
    with pytest.raises(ValueError, match="keep_probs must hold one value per weight layer"):
        fit_dropout_regressor(x, y, **dict(kw, keep_probs=(0.9,)))
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        fit_dropout_regressor(x, y, **dict(kw, iterations=0))


@pytest.mark.parametrize("dtype, activation, fused", [(torch.float32, "relu", False),
                                                     (torch.float64, "tanh", False),
                                                     (torch.float32, "relu", True)])
def test_n_steps_equal_half_then_resume_bit_for_bit(tmp_path, dtype, activation, fused):
    x, y = _xy(dtype)
    kw = dict(TRAIN_KW, activation=activation, fused_adam=fused)
    whole = fit_dropout_regressor(x, y, iterations=60, **kw)
    ckpt = tmp_path / "net.ckpt"
    first = fit_dropout_regressor(x, y, iterations=23, checkpoint=ckpt, **kw)  # mid-epoch
    assert first.resumed_from is None and first.steps == 23
    meta = read_checkpoint_meta(ckpt)
    assert (meta["step"], meta["finished"], meta["stopped_by"]) == (23, True, "budget")
    assert meta["settings"]["trainer"] == TRAINER == "comparisons.training.dropout_regressor/1"
    second = fit_dropout_regressor(x, y, iterations=60, checkpoint=ckpt, resume=True, **kw)
    assert second.resumed_from == 23 and second.call_steps == 37 and second.steps == 60
    assert _same_fit(whole, second)
    assert second.train_time_s >= second.call_time_s > 0
    # resuming a finished run with the same budget takes no step and returns the same network
    again = fit_dropout_regressor(x, y, iterations=60, checkpoint=ckpt, resume=True, **kw)
    assert again.call_steps == 0 and _same_fit(whole, again)
    if fused:  # Adam's fused kernel rounds differently: other numbers than the default's
        default = fit_dropout_regressor(x, y, iterations=60, **dict(kw, fused_adam=False))
        assert not np.array_equal(default.losses, whole.losses)
        np.testing.assert_allclose(default.losses[:5], whole.losses[:5], rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")
def test_cuda_training_resumes_bit_for_bit_and_draws_its_own_stream(tmp_path):
    x, y = _xy()
    kw = dict(TRAIN_KW, device="cuda")
    whole = fit_dropout_regressor(x, y, iterations=160, **kw)
    assert whole.device == "cuda" and whole.device_name.startswith("cuda (")
    assert all(w.device.type == "cpu" for w in whole.params.weights)
    ckpt = tmp_path / "gpu.ckpt"
    fit_dropout_regressor(x, y, iterations=77, checkpoint=ckpt, **kw)
    rest = fit_dropout_regressor(x, y, iterations=160, checkpoint=ckpt, resume=True, **kw)
    assert rest.resumed_from == 77 and _same_fit(whole, rest)
    cpu = fit_dropout_regressor(x, y, iterations=160, **TRAIN_KW)
    assert not np.array_equal(cpu.losses, whole.losses)  # another random stream
    with pytest.raises(CheckpointMismatch, match="device: 'cuda' in the checkpoint, 'cpu' now"):
        fit_dropout_regressor(x, y, iterations=200, checkpoint=ckpt, resume=True, **TRAIN_KW)


_CHILD = """
import sys, torch
torch.set_num_threads(1)
from comparisons.training.dropout_regressor import fit_dropout_regressor
x = torch.linspace(-1, 1, 50).unsqueeze(-1)
fit_dropout_regressor(x, torch.sin(3 * x), hidden=(16, 16), activation="relu",
                      keep_probs=(1.0, 0.8, 0.8), reg=1e-4, batch_size=8, lr=1e-2, seed=3,
                      iterations=10**9, checkpoint=sys.argv[1], checkpoint_every_steps=97)
"""


def test_a_run_killed_with_sigkill_resumes_bit_for_bit(tmp_path):
    ckpt = tmp_path / "killed" / "net.ckpt"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(ckpt)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert ckpt.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() else "timeout"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    meta = read_checkpoint_meta(ckpt)
    k = meta["step"]
    assert k > 0 and k % 97 == 0 and meta["finished"] is False and meta["budget"] == 10**9
    x, y = _xy()
    with pytest.raises(ValueError, match=r"holds an unfinished run .*resume it"):
        fit_dropout_regressor(x, y, iterations=k + 40, checkpoint=ckpt, **TRAIN_KW)
    resumed = fit_dropout_regressor(x, y, iterations=k + 40, checkpoint=ckpt, resume=True,
                                    **TRAIN_KW)
    assert resumed.resumed_from == k
    assert _same_fit(fit_dropout_regressor(x, y, iterations=k + 40, **TRAIN_KW), resumed)


def test_resume_refuses_other_settings_and_damaged_files(tmp_path):
    x, y = _xy()
    ckpt = tmp_path / "net.ckpt"
    fit_dropout_regressor(x, y, iterations=10, checkpoint=ckpt, **TRAIN_KW)
    for change, named in ((dict(lr=0.02), "lr: 0.01 in the checkpoint, 0.02 now"),
                          (dict(activation="tanh"), "activation: 'relu' in the checkpoint"),
                          (dict(seed=4, batch_size=16), "batch_size: 8 in the checkpoint, 16 now; "
                                                        "seed: 3 in the checkpoint, 4 now"),
                          (dict(hidden=(16, 8)), "widths"),
                          (dict(fused_adam=True), "fused_adam")):
        with pytest.raises(CheckpointMismatch, match=re.escape(named)):
            fit_dropout_regressor(x, y, iterations=20, checkpoint=ckpt, resume=True,
                                  **dict(TRAIN_KW, **change))
    with pytest.raises(CheckpointMismatch, match="data_sha256"):
        fit_dropout_regressor(x, y + 1, iterations=20, checkpoint=ckpt, resume=True, **TRAIN_KW)
    with pytest.raises(CheckpointMismatch, match="dtype: 'float32' in the checkpoint"):
        fit_dropout_regressor(*_xy(torch.float64), iterations=20, checkpoint=ckpt, resume=True,
                              **TRAIN_KW)
    data = bytearray(ckpt.read_bytes())
    data[-3] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=re.escape(str(ckpt)) + ".*SHA-256"):
        fit_dropout_regressor(x, y, iterations=20, checkpoint=ckpt, resume=True, **TRAIN_KW)
    # without resume, a finished (here: damaged) checkpoint is simply replaced
    fresh = fit_dropout_regressor(x, y, iterations=12, checkpoint=ckpt, **TRAIN_KW)
    assert fresh.resumed_from is None and read_checkpoint_meta(ckpt)["step"] == 12
    # resume without a checkpoint file starts afresh
    other = fit_dropout_regressor(x, y, iterations=5, checkpoint=tmp_path / "new.ckpt",
                                  resume=True, **TRAIN_KW)
    assert other.resumed_from is None and other.steps == 5


def test_stopping_rule_compares_window_means():
    rule = StoppingRule(window=2, tolerance=0.1)
    assert not rule.should_stop(np.array([4.0, 4.0, 2.0, 2.0]))          # 2 < 4 - 0.4
    assert rule.should_stop(np.array([4.0, 4.0, 2.0, 2.0, 1.9, 1.9]))    # 1.9 >= 2 - 0.2
    assert not rule.should_stop(np.array([4.0, 4.0, 2.0, 2.0, 1.7, 1.7]))  # 1.7 < 1.8
    assert not rule.should_stop(np.array([4.0, 4.0, 2.0, 2.0, 1.9]))     # not at a window end
    assert not rule.should_stop(np.array([4.0, 4.0]))                    # one window: no stop
    # the best EARLIER window counts, not the previous one
    assert rule.should_stop(np.array([1.0, 1.0, 3.0, 3.0, 0.95, 0.95]))
    # tolerance 0: a window must be strictly lower than the best earlier one
    exact = StoppingRule(window=1, tolerance=0.0)
    assert exact.should_stop(np.array([1.0, 1.0])) and not exact.should_stop(np.array([1.0, 0.9]))
    for bad in (dict(window=0), dict(window=2, tolerance=-0.1), dict(window=2, tolerance=math.inf)):
        with pytest.raises(ValueError, match="window|tolerance"):
            StoppingRule(**bad)


def test_training_stops_by_the_rule_and_a_resumed_run_stops_at_the_same_step(tmp_path):
    x, y = _xy()
    rule = StoppingRule(window=35, tolerance=0.05)
    whole = fit_dropout_regressor(x, y, iterations=5000, stop=rule, **TRAIN_KW)
    assert whole.stopped_by == "stopping_rule" and whole.steps < 5000
    assert whole.steps % 35 == 0 and rule.should_stop(whole.losses)
    assert not any(rule.should_stop(whole.losses[:n]) for n in range(70, whole.steps, 35))
    ckpt = tmp_path / "net.ckpt"
    part = fit_dropout_regressor(x, y, iterations=whole.steps - 50, stop=rule, checkpoint=ckpt,
                                 **TRAIN_KW)
    assert part.stopped_by == "budget"
    rest = fit_dropout_regressor(x, y, iterations=5000, stop=rule, checkpoint=ckpt, resume=True,
                                 **TRAIN_KW)
    assert rest.stopped_by == "stopping_rule" and _same_fit(whole, rest)
    meta = read_checkpoint_meta(ckpt)
    assert meta["stopped_by"] == "stopping_rule" and meta["step"] == whole.steps


def test_loss_history_of_the_gpu_path_fetches_in_blocks_and_reports_divergence():
    # the GPU path keeps the losses on the device and fetches them every few steps: the same
    # buffer runs here on CPU tensors
    hist = LossHistory(np.array([9.0, 8.0]), flush_every=3)
    for v in (7.0, 6.0, 5.0, 4.0):
        hist.put(torch.tensor(v, dtype=torch.float32))
    assert hist.count == 5 and len(hist.pending) == 1
    np.testing.assert_array_equal(hist.values(6), [9, 8, 7, 6, 5, 4])
    for _ in range(3000):  # grows past its first capacity
        hist.put(torch.tensor(1.0))
    assert hist.values(3006)[-1] == 1.0
    hist.put(torch.tensor(2.0))
    hist.put(torch.tensor(float("nan")))
    with pytest.raises(FloatingPointError, match="training diverged at step 3007"):
        hist.flush()



def test_devices_are_checked_before_any_work():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    with pytest.raises(ValueError, match=r"torch.cuda.is_available\(\) is False"):
        resolve_device("cuda")
    x, y = _xy()
    with pytest.raises(ValueError, match="is False"):
        fit_dropout_regressor(x, y, iterations=3, device="cuda", **TRAIN_KW)


def test_preflight_checks_arguments_and_checkpoint_without_training(tmp_path):
    x, y = _xy()
    ckpt = tmp_path / "net.ckpt"
    preflight_dropout_regressor(x, y, iterations=10, checkpoint=ckpt, resume=True, **TRAIN_KW)
    assert not ckpt.exists()
    fit_dropout_regressor(x, y, iterations=10, checkpoint=ckpt, **TRAIN_KW)
    before = ckpt.read_bytes()
    preflight_dropout_regressor(x, y, iterations=20, checkpoint=ckpt, resume=True, **TRAIN_KW)
    with pytest.raises(CheckpointMismatch, match="lr: 0.01 in the checkpoint, 0.02 now"):
        preflight_dropout_regressor(x, y, iterations=20, checkpoint=ckpt, resume=True,
                                    **dict(TRAIN_KW, lr=0.02))
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        preflight_dropout_regressor(x, y, iterations=0, **TRAIN_KW)
    assert ckpt.read_bytes() == before
