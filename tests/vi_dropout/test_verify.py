import json

import pytest

from vi_dropout import __main__ as cli
from vi_dropout import verify
from vi_dropout.verify import (
    VerifyProblem,
    check_gradients,
    check_kl,
    check_pyro_gradient,
    check_trajectories,
    check_values,
)


@pytest.fixture(scope="module")
def problem():
    return VerifyProblem()


def test_gradient_rows_pass_and_shrink_linearly(problem):
    rows = check_gradients(problem)
    assert all(r["passed"] for r in rows)
    smallest = [r for r in rows if r["setting"].startswith("theta=1e-06")]
    assert len(smallest) == 6 and max(r["value"] for r in smallest) <= 1e-4
    slope = [r for r in rows if "slope" in r["setting"]][0]
    assert 0.8 <= slope["value"] <= 1.5


def test_value_rows_residual_within_ten_theta(problem):
    rows = check_values(problem)
    assert len(rows) == 5 and all(r["passed"] for r in rows)


def test_pyro_row_small(problem):
    rows = check_pyro_gradient(problem, num_particles=512, num_batches=4, num_mask_draws=100)
    cos = rows[0]["value"]
    assert rows[0]["passed"] and cos >= 0.99


def test_trajectory_row(problem):
    rows = check_trajectories(problem, num_steps=200)
    assert rows[0]["passed"] and rows[0]["value"] <= 1e-6


def test_trajectory_row_detects_a_wrong_weight_decay_map(problem, monkeypatch):
    # forgetting the 1/keep_prob^2 in the inverted decay must break the match
    monkeypatch.setattr(verify, "inverted_weight_decay", lambda wd, kp: wd)
    rows = check_trajectories(problem, num_steps=50)
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
