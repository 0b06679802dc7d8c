r"""What the UCI protocols' settings share, declared and validated once.

:class:`ProtocolSettings` validates whichever of the shared fields a protocol's settings have
(``epochs_multiplier``, ``num_samples``, ``prior_length_scale``, ``batch_size``, ``seed``,
``dtype``); :class:`TrainingSettings` declares all six for the protocols that train a network
for a number of epochs and sample it (MC dropout, Concrete dropout, mean-field VI). A protocol's
own settings subclass one of them and add their fields; their ``__post_init__`` calls
``super().__post_init__()`` first. Field order does not change a cell's id (the configuration is
hashed with sorted keys: :func:`~comparisons.runner.store.config_hash`).

Example:
    >>> TrainingSettings(epochs_multiplier=0)
    Traceback (most recent call last):
    ...
    ValueError: epochs_multiplier must be a finite number > 0, got 0
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from vi_dropout.validation import check_int, check_positive, check_positive_int

__all__ = ["ProtocolSettings", "TrainingSettings", "DTYPES"]

#: the dtypes a protocol may train in
DTYPES = ("float32", "float64")

_CHECKS = {
    "epochs_multiplier": check_positive,
    "num_samples": check_positive_int,
    "prior_length_scale": check_positive,
    "batch_size": check_positive_int,
    "seed": check_int,
}


class ProtocolSettings:
    """Base of every protocol's settings (a frozen dataclass): validates the shared fields it
    has, naming the field; a field named in :attr:`optional_fields` may also be ``None``."""

    #: shared fields that may be ``None`` (the protocol's default)
    optional_fields: tuple[str, ...] = ()

    def __post_init__(self):
        names = {f.name for f in fields(self)}
        for name, check in _CHECKS.items():
            if name in names and not (name in self.optional_fields
                                      and getattr(self, name) is None):
                check(getattr(self, name), name)
        if "dtype" in names and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")


@dataclass(frozen=True)
class TrainingSettings(ProtocolSettings):
    """The shared fields of a protocol that trains a network and samples its predictive.

    Attributes:
        epochs_multiplier: the protocol's base epochs (40; 20 for protein) times this.
        num_samples: :math:`T`, MC samples at test time.
        prior_length_scale: :math:`l` of the prior.
        batch_size: minibatch rows.
        seed: base seed.
        dtype: ``"float32"`` or ``"float64"``.
    """

    epochs_multiplier: float = 10
    num_samples: int = 10_000
    prior_length_scale: float = 1e-2
    batch_size: int = 128
    seed: int = 0
    dtype: str = "float32"
