"""Data sets: the UCI regression sets with their standard splits (packaged), the 1-D toy problem,
the 8x8 digits / MNIST and the Mauna Loa CO2 record; ``load_split`` loads either the toy or a UCI
split by name."""

import lazy_loader

# the names and their modules are in __init__.pyi; each module is imported on first use, so that
# the command line parses without torch (lazy_loader: scientific-python SPEC 1)
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
