"""The equivalence reports: :func:`~vi_dropout.verify.network.verify_network` for your own
network, :func:`~vi_dropout.verify.paper.run_verify` for the paper's MLP (and the KL and
Concrete checks), with the branch recorder they share (:mod:`~vi_dropout.verify.kinks`)."""

from vi_dropout.verify.network import verify_network
from vi_dropout.verify.paper import run_verify

__all__ = ["verify_network", "run_verify"]
