import json
import math
import time

import pytest

from vi_dropout import cli
from vi_dropout.verify import network
from vi_dropout.verify import paper as verify
from vi_dropout.verify.network import (
    check_module_trajectory,
    check_network_gradients,
    check_network_values,
)
from vi_dropout.verify.paper import VerifyProblem, check_kl, check_pyro_gradient


@pytest.fixture(scope="module")
def problem():
    return VerifyProblem()


def test_gradient_rows_pass_and_shrink_linearly(problem):
    """The paper's problem through the one gradient check (verify_network's scan): every row
    passes, each of the 6 parameters has an O(theta) row (slope in [0.8, 1.2]) whose difference
    at the smallest theta is <= 1e-4, and so has the whole gradient."""
    rows, window = check_network_gradients(problem)
    assert window and all(r["passed"] for r in rows)
    per_param = [r for r in rows if r["setting"].startswith("layers.")]
    assert len(per_param) == 6 and all(0.8 <= r["value"] <= 1.2 for r in per_param)
    whole = rows[-1]
    assert whole["setting"].startswith("all parameters") and whole["value"] <= 1e-4


def test_value_rows_residual_shrinks_like_theta(problem):
    _, window = check_network_gradients(problem)
    rows = check_network_values(problem, window)
    assert len(rows) == len(window) and all(r["passed"] for r in rows)
    assert rows[-1]["value"] <= 1e-4


def test_pyro_row_small(problem):
    rows = check_pyro_gradient(problem, num_particles=512, num_batches=4, num_mask_draws=100)
    cos = rows[0]["value"]
    assert rows[0]["passed"] and cos >= 0.99


def test_trajectory_row(problem):
    rows = check_module_trajectory(problem, num_steps=200, theta=1e-6)
    assert rows[0]["passed"] and rows[0]["value"] <= 1e-6


def test_trajectory_row_detects_a_wrong_weight_decay_map(problem, monkeypatch):
    # forgetting the 1/keep_prob^2 in the inverted decay must break the match
    monkeypatch.setattr(network, "inverted_weight_decay", lambda wd, kp: wd)
    rows = check_module_trajectory(problem, num_steps=50, theta=1e-6)
    assert not rows[0]["passed"]


def test_kl_rows_small():
    rows = check_kl(widths=(1, 4, 64), thetas=(1e-1,), keep_probs=(0.5,), num_samples=2000,
                    gap_samples=500)
    assert all(r["passed"] for r in rows)
    assert len(rows) == 4


def test_cli_writes_json_and_exit_code(tmp_path, monkeypatch, capsys):
    fake = [{"check": "x", "setting": "s", "value": 1.0, "tolerance": "<= 2", "passed": True,
             "detail": ""}]
    monkeypatch.setattr(verify, "run_verify", lambda quick, show_progress: list(fake))
    out = tmp_path / "v.json"
    assert cli.main(["verify", "--quick", "--json", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["rows"] == fake
    assert "1 passed, 0 failed" in capsys.readouterr().out
    fake[0]["passed"] = False
    assert cli.main(["verify", "--no-progress"]) == 1


def test_gradient_rows_finite_and_passing_with_undropped_inputs():
    """keep_prob = 1 on the inputs (the usual "no dropout on the inputs") used to give NaN rows
    (0 log 0 in the gap's gradient); every row must now be finite and pass its tolerance.
    theta >= 1e-4 is left out: with these masks a ReLU pre-activation lies within ~1e-4 of its
    kink, so one draw's gradient jumps there (an O(theta)-probability event, not a bias)."""
    rows, window = check_network_gradients(VerifyProblem(keep_probs=(1.0, 0.8, 0.8)),
                                           thetas=(1e-5, 1e-6))
    assert window == (1e-5, 1e-6)
    assert rows and all(r["passed"] for r in rows)
    assert all(math.isfinite(r["value"]) for r in rows)


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_cli_checks_the_json_path_before_the_run(where, tmp_path, monkeypatch, capsys):
    def no_run(quick, show_progress):
        raise AssertionError("the report ran before the --json path was checked")

    monkeypatch.setattr(verify, "run_verify", no_run)
    (tmp_path / "afile").write_text("a file, not a folder")
    path = tmp_path / "afile" / "x.json" if where == "under_a_file" else tmp_path
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", "--quick", "--json", str(path), "--no-progress"])
    assert time.perf_counter() - t0 < 0.5
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].count("error: --json") == 1


def test_cli_user_error_is_one_line_and_debug_shows_traceback(monkeypatch, capsys):
    def bad(quick, show_progress):
        raise ValueError("a bad\nsetting")

    monkeypatch.setattr(verify, "run_verify", bad)
    assert cli.main(["verify", "--no-progress"]) == 2
    assert capsys.readouterr().err == "error: a bad setting\n"
    with pytest.raises(ValueError, match="a bad"):
        cli.main(["--debug", "verify", "--no-progress"])
    monkeypatch.setattr(verify, "run_verify", lambda quick, show_progress: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    assert cli.main(["verify", "--no-progress"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_concrete_rows_pass_and_the_bias_is_resolved():
    """The relaxed gradient's bias is significant at the highest temperature (so the rows could
    fail) and shrinks into the Monte Carlo error at the lowest; the entropy derivative row is
    exact to rounding."""
    from vi_dropout.verify.paper import check_concrete

    rows = check_concrete(num_batches=10, per_batch=4_000)
    assert len(rows) == 5 and all(r["check"] == "concrete" for r in rows)
    assert all(r["passed"] for r in rows), [r for r in rows if not r["passed"]]
    first, last = rows[0]["value"], rows[3]["value"]
    assert first > 10 * float(rows[0]["detail"].split("SE ")[1]) and last < 0.1 * first


def test_concrete_maximiser_rows_pass_fast_and_name_the_maximiser():
    """The learned keep_prob lands on the exact maximiser within the tolerance the relaxed
    bias and the Monte Carlo error allow, the maximiser is interior, and the quick row is fast."""
    from vi_dropout.verify.paper import check_concrete_maximiser

    t0 = time.perf_counter()
    rows = check_concrete_maximiser()
    assert time.perf_counter() - t0 < 10
    assert len(rows) == 2 and all(r["check"] == "concrete" for r in rows)
    assert all(r["passed"] for r in rows), rows
    kp_star = float(rows[0]["detail"].split("keep_prob* ")[1].split()[0])
    assert 0.1 < kp_star < 0.9
    # the tolerance is a resolution, not a blanket: a hundredth or two of the keep_prob
    assert float(rows[1]["tolerance"].split("<= ")[1]) < 0.03


def test_concrete_maximiser_row_detects_a_different_elbo(monkeypatch):
    """An exact side with another prior length-scale moves the maximiser away from what the
    Concrete optimisation learns: the row must fail."""
    from vi_dropout.verify.paper import check_concrete_maximiser

    real = verify.negative_elbo

    def other_prior(*args, prior_length_scale, **kwargs):
        return real(*args, prior_length_scale=2 * prior_length_scale, **kwargs)

    monkeypatch.setattr(verify, "negative_elbo", other_prior)
    rows = check_concrete_maximiser(steps=200, num_samples=256, bias_draws=200_000)
    assert rows[0]["passed"] and not rows[1]["passed"]
