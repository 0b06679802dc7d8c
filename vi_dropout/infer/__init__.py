"""Inference for MC dropout, as Pyro keeps ``pyro.infer``: the full ELBO and the dropout loss
(:mod:`~vi_dropout.infer.elbo`), the per-example ELBO for SVI
(:mod:`~vi_dropout.infer.per_example_elbo`), Concrete dropout
(:mod:`~vi_dropout.infer.module_concrete` for any network, :mod:`~vi_dropout.infer.concrete`
for many small MLPs at once), mean-field Gaussian VI (:mod:`~vi_dropout.infer.mean_field`),
their shared fitting loop (:mod:`~vi_dropout.infer.fit_loop`) and one optimiser for SVI
(:mod:`~vi_dropout.infer.optim`)."""

from vi_dropout.infer.elbo import dropout_loss, negative_elbo
from vi_dropout.infer.mean_field import fit_mean_field
from vi_dropout.infer.module_concrete import fit_module_concrete
from vi_dropout.infer.optim import JointAdam
from vi_dropout.infer.per_example_elbo import PerExampleDropoutELBO

__all__ = ["negative_elbo", "dropout_loss", "PerExampleDropoutELBO", "fit_module_concrete",
           "fit_mean_field", "JointAdam"]
