"""The shared protocol settings: every protocol's settings validate the shared fields they have
in one place (naming the field), and the base does not change a cell's configuration."""

from __future__ import annotations

from dataclasses import asdict, fields

import pytest

from comparisons.protocols.registry import RunSettings
from comparisons.protocols.settings import ProtocolSettings, TrainingSettings
from comparisons.protocols.uci import MCDropoutUCISettings
from comparisons.protocols.uci_concrete import ConcreteUCISettings
from comparisons.protocols.uci_deep_ensemble import DeepEnsembleUCISettings
from comparisons.protocols.uci_mfvi import MFVIUCISettings
from comparisons.runner.store import config_hash

CLASSES = [MCDropoutUCISettings, ConcreteUCISettings, MFVIUCISettings, DeepEnsembleUCISettings,
           RunSettings]
BAD = {"epochs_multiplier": (0, "epochs_multiplier must be a finite number > 0"),
       "num_samples": (0, "num_samples must be an integer >= 1"),
       "prior_length_scale": (-1.0, "prior_length_scale must be a finite number > 0"),
       "batch_size": (True, "batch_size must be an integer >= 1, got a bool"),
       "seed": ("0", "seed must be an integer"),
       "dtype": ("float16", "dtype must be 'float32' or 'float64', got 'float16'")}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_shared_field_is_checked_by_the_base(cls):
    assert issubclass(cls, ProtocolSettings)
    names = {f.name for f in fields(cls)}
    checked = [name for name in BAD if name in names]
    assert checked  # every protocol with training has some of the shared fields
    for name in checked:
        value, message = BAD[name]
        with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
            cls(**{name: value})


@pytest.mark.parametrize("cls", [MCDropoutUCISettings, ConcreteUCISettings, MFVIUCISettings])
def test_training_protocols_share_the_six_fields(cls):
    shared = [f.name for f in fields(TrainingSettings)]
    assert shared == ["epochs_multiplier", "num_samples", "prior_length_scale", "batch_size",
                      "seed", "dtype"]
    assert issubclass(cls, TrainingSettings)
    assert set(shared) <= {f.name for f in fields(cls)}


def test_the_configuration_hash_of_the_protocol_is_unchanged():
    """Cells are identified by the hash of their settings: the MC dropout protocol's default
    settings hash as they did before the base class (same keys, same values; key order does not
    count), so committed results stay addressable."""
    config = asdict(MCDropoutUCISettings())
    assert list(config)[:6] == ["epochs_multiplier", "num_samples", "prior_length_scale",
                                "batch_size", "seed", "dtype"]
    before = {"epochs_multiplier": 10, "num_samples": 10_000, "prior_length_scale": 1e-2,
              "validation_fraction": 0.2, "batch_size": 128, "seed": 0, "dtype": "float32",
              "max_grid": None}
    assert config == before and config_hash(config) == config_hash(before)
