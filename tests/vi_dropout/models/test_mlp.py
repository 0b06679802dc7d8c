import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.poutine import trace

from tests.common import toy_regression
from vi_dropout.distributions import DropoutNormal
from vi_dropout.guides import DropoutGuide
from vi_dropout.models import BayesianMLP
from vi_dropout.network import Architecture


def _model_guide(likelihood="gaussian", out=1):
    model = BayesianMLP(Architecture((2, 8, out)), prior_length_scale=1.0, tau=20.0,
                        likelihood=likelihood, keep_prob=(0.9, 0.8),
                        generator=torch.Generator().manual_seed(0))
    guide = DropoutGuide(model, theta=1e-2)
    return model, guide


def test_guide_sites_are_dropout_normal_and_match_model_shapes():
    model, guide = _model_guide()
    x, y = toy_regression(10, 2, 1)
    gtr = trace(guide).get_trace(x, y)
    mtr = trace(pyro.poutine.replay(model, trace=gtr)).get_trace(x, y)
    for i, (out, inp) in enumerate(model.architecture.layer_shapes):
        site = gtr.nodes[f"layers.{i}.weight"]
        assert isinstance(site["fn"], DropoutNormal)
        assert site["value"].shape == (out, inp) == mtr.nodes[f"layers.{i}.weight"]["value"].shape
    assert float(gtr.nodes["layers.0.weight"]["fn"].keep_prob) == pytest.approx(0.9)


@pytest.mark.parametrize("likelihood,out", [("gaussian", 1), ("categorical", 3)])
def test_svi_vectorised_particles_decreases_loss(likelihood, out):
    model, guide = _model_guide(likelihood, out)
    x, y = toy_regression(40, 2, 1)
    if likelihood == "categorical":
        y = (y.squeeze(-1) > 0).long() + (x[:, 0] > 0.5).long()
    elbo = Trace_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), elbo)
    first = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    for _ in range(300):
        svi.step(x, y)
    last = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    assert last < first - 1.0


def test_minibatch_likelihood_is_scaled_to_num_data():
    model, guide = _model_guide()
    x, y = toy_regression(40, 2, 1)
    gtr = trace(guide).get_trace()
    full = trace(pyro.poutine.replay(model, trace=gtr)).get_trace(x[:10], y[:10])
    scaled = trace(pyro.poutine.replay(model, trace=gtr)).get_trace(x[:10], y[:10], num_data=40)
    full.compute_log_prob()
    scaled.compute_log_prob()
    torch.testing.assert_close(scaled.nodes["obs"]["scale"] * full.nodes["obs"]["log_prob_sum"],
                               4.0 * full.nodes["obs"]["log_prob_sum"])
    sub = trace(pyro.poutine.replay(model, trace=gtr)).get_trace(x, y, subsample_size=8)
    assert sub.nodes["obs"]["value"].shape == (8, 1)


def test_bad_inputs():
    model, _ = _model_guide()
    with pytest.raises(ValueError, match="keep_prob"):
        BayesianMLP(Architecture((2, 3, 1)), keep_prob=1.5)
    with pytest.raises(ValueError, match="theta"):
        DropoutGuide(model, theta=0.0)
    with pytest.raises(ValueError, match="prior_length_scale"):
        BayesianMLP(Architecture((2, 3, 1)), prior_length_scale=-1.0)
    with pytest.raises(ValueError, match="tau"):
        BayesianMLP(Architecture((2, 3, 1)), tau=0.0)
    with pytest.raises(ValueError, match=r"init_weights\[0\] must have shape \(8, 2\)"):
        DropoutGuide(model, init_weights=[torch.zeros(8, 3), torch.zeros(1, 8)])
    with pytest.raises(ValueError, match="features"):
        model(torch.zeros(5, 3, dtype=torch.float64))
    x, y = toy_regression(5, 2, 1)
    x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="x must be finite"):
        model(x, y)


def test_bayesian_mlp_refuses_zero_rows_naming_x():
    """N = 0 gave Pyro's ``ZeroDivisionError: size cannot be zero`` (and ``float division by
    zero`` with num_data)."""
    model, guide = _model_guide()
    x, y = toy_regression(0, 2, 1)
    for kwargs in ({}, {"num_data": 10}, {"subsample_size": 1}):
        with pytest.raises(ValueError, match=r"^x must hold at least one row \(N >= 1\), got 0 "
                                             r"rows \(shape \(0, 2\)\)$"):
            model(x, y, **kwargs)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    with pytest.raises(ValueError, match=r"^x must hold at least one row"):
        svi.step(x, y)


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_data=True), r"^num_data must be an integer >= 1, got a bool \(True\)"),
    (dict(num_data="10"), r"^num_data must be an integer >= 1, got a str \('10'\)"),
    (dict(num_data=0), r"^num_data must be an integer >= 1, got 0$"),
    (dict(num_data=3), r"^num_data is the size N of the whole data set, so at least the "
                       r"minibatch's 5 rows, got 3$"),
    (dict(subsample_size=True), r"^subsample_size must be an integer >= 1, got a bool"),
    (dict(subsample_size=6), r"^subsample_size must be at most the 5 rows of x, got 6$"),
])
def test_bayesian_mlp_data_sizes_are_checked(kwargs, message):
    model, _ = _model_guide()
    x, y = toy_regression(5, 2, 1)
    with pytest.raises(ValueError, match=message):
        model(x, y, **kwargs)


def test_bayesian_mlp_numpy_integers_are_valid_data_sizes():
    model, _ = _model_guide()
    x, y = toy_regression(5, 2, 1)
    pyro.set_rng_seed(0)
    want = trace(model).get_trace(x, y, num_data=10).log_prob_sum()
    pyro.set_rng_seed(0)
    got = trace(model).get_trace(x, y, num_data=np.int64(10)).log_prob_sum()
    assert torch.equal(got, want)


@pytest.mark.parametrize("x_dtype,guide_dtype", [(torch.float32, torch.float64),
                                                 (torch.float64, torch.float32)])
def test_x_of_another_dtype_than_the_guide_is_refused_not_cast(x_dtype, guide_dtype):
    """A float32 x against a float64 guide's weights gave torch's raw ``expected m1 and m2 to
    have the same dtype``; the other way too."""
    model = BayesianMLP(Architecture((2, 8, 1)), prior_length_scale=1.0, tau=20.0,
                        dtype=guide_dtype)
    guide = DropoutGuide(model)
    x, y = toy_regression(6, 2, 1, dtype=x_dtype)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    message = (rf"^x has dtype {x_dtype} but the dtype of the module is {guide_dtype}: convert "
               rf"x with x.to\({guide_dtype}\)")
    with pytest.raises(ValueError, match=message):
        svi.step(x, y)
    with pytest.raises(ValueError, match=message):
        Predictive(model, guide=guide, num_samples=2)(x)
    svi.step(x.to(guide_dtype), y.to(guide_dtype))  # the same data in the guide's dtype works


def test_integer_x_is_refused():
    model, _ = _model_guide()
    with pytest.raises(ValueError, match=r"^x must be a floating-point tensor, got dtype "
                                         r"torch.int64$"):
        model(torch.zeros(3, 2, dtype=torch.long))


@pytest.mark.parametrize("kwargs,name,kind", [
    (dict(tau=True), "tau", "a bool"),
    (dict(tau="10"), "tau", "a str"),
    (dict(prior_length_scale=np.bool_(True)), "prior_length_scale", "a bool"),
    (dict(prior_length_scale="1"), "prior_length_scale", "a str"),
])
def test_bayesian_mlp_scalars_must_be_numbers(kwargs, name, kind):
    with pytest.raises(ValueError, match=rf"^{name} must be a finite number > 0, got {kind} "):
        BayesianMLP(Architecture((2, 8, 1)), **kwargs)
    numpy_kwargs = {k: np.float64(2.0) for k in kwargs}
    assert getattr(BayesianMLP(Architecture((2, 8, 1)), **numpy_kwargs), name) == 2.0


@pytest.mark.parametrize("kwargs,message", [
    (dict(keep_prob="0.9"), r"^keep_prob must be a real number in \(0, 1\], got a str"),
    (dict(keep_prob=True), r"^keep_prob must be a real number in \(0, 1\], got a bool"),
    (dict(keep_prob=(0.9, np.bool_(True))), r"^keep_prob\[1\] must be a real number in "
                                            r"\(0, 1\], got a bool"),
    (dict(theta=True), r"^theta must be a finite number > 0, got a bool"),
    (dict(theta="0.01"), r"^theta must be a finite number > 0, got a str"),
])
def test_model_and_guide_scalars_must_be_numbers(kwargs, message):
    """keep_prob ``"0.9"`` or ``True`` was accepted silently (``True`` = keep_prob 1)."""
    with pytest.raises(ValueError, match=message):
        model_kwargs = {k: v for k, v in kwargs.items() if k == "keep_prob"}
        model = BayesianMLP(Architecture((2, 8, 1)), **model_kwargs)
        DropoutGuide(model, **{k: v for k, v in kwargs.items() if k != "keep_prob"})
    model = BayesianMLP(Architecture((2, 8, 1)), keep_prob=np.float64(0.9))
    assert DropoutGuide(model).keep_probs == (0.9, 0.9) == model.keep_probs


@pytest.mark.parametrize("widths", [(2, True, 1), (2, "8", 1), (np.bool_(True), 8, 1)])
def test_architecture_widths_must_be_integers(widths):
    with pytest.raises(ValueError, match=r"^widths\[\d\] must be an integer >= 1, got a (bool|str)"):
        Architecture(widths)


def test_network_with_dropout_runs_mc_dropout_and_the_dropout_free_copy_is_refused():
    """A new user's first try was guide.load_into(model.net): the model's own copy has no
    dropout, so MC dropout through it had zero spread, silently. It is refused, naming the way
    that works: model.network_with_dropout()."""
    from vi_dropout.predict import mc_predict

    model = BayesianMLP(Architecture((1, 16, 1)), 1.0, 10.0, keep_prob=[1.0, 0.9],
                        generator=torch.Generator().manual_seed(0))
    guide = DropoutGuide(model, theta=1e-2)
    with pytest.raises(ValueError, match=r"^module has no dropout in front of layer 'layers.1'"
                                         r".*model.network_with_dropout\(\)"):
        guide.load_into(model.net)
    net = guide.load_into(model.network_with_dropout())
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)[:, None]
    draws = mc_predict(x, net, T=200, generator=torch.Generator().manual_seed(1))
    assert draws.shape == (200, 7, 1) and float(draws.std(0).min()) > 0


def test_theta_below_the_dtype_floor_and_a_guide_of_another_model_are_refused():
    """theta = 1e-160 passed the check and the per-example ELBO became NaN; a guide built for
    another model was accepted and scored the model's prior."""
    from comparisons.inference_data.vi_psis import variational_psis

    model = BayesianMLP(Architecture((2, 8, 1)), 1.0, 10.0, keep_prob=0.9)
    with pytest.raises(ValueError, match=r"^theta must be at least 1.49e-154 for a "
                                         r"torch.float64 model"):
        DropoutGuide(model, theta=1e-160)
    small = BayesianMLP(Architecture((2, 8, 1)), 1.0, 10.0, keep_prob=0.9, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"^theta must be at least 1.08e-19 for a torch.float32"):
        DropoutGuide(small, theta=1e-20)
    other = BayesianMLP(Architecture((2, 4, 1)), 1.0, 10.0, keep_prob=0.9)
    x, y = toy_regression(20, 2, 1)
    with pytest.raises(ValueError, match="^guide was built for another model"):
        variational_psis(model, DropoutGuide(other, theta=0.1), x, y, num_draws=100)
