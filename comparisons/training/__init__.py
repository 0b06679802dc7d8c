"""Resumable training of one dropout network: checkpoints, a stopping rule, CPU or CUDA.

Modules::

    checkpoint          checkpoint files: atomic, checksummed, verified when read; settings
                        compared with the current ones
    dropout_regressor   fit_dropout_regressor (step budget or StoppingRule, checkpointed,
                        resumable bit for bit), resolve_device
    stopping            StoppingRule (NumPy only)

The names below are imported on first use (``__getattr__``), so that the light module
``stopping`` loads without torch.
"""

import lazy_loader

# the names and their modules are in __init__.pyi; lazy_loader (scientific-python SPEC 1) imports
# each module on first use
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
