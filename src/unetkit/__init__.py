"""unetkit: U-Net segmentation for microscopy images that trains well on a CPU.

The command line (`unetkit train / predict / evaluate / demo`) is a thin layer
over these functions (unetkit/api.py): `unetkit.train`, `unetkit.predict`,
`unetkit.evaluate`, `unetkit.check`, `unetkit.resume`, `unetkit.export`, `unetkit.load_run`, `unetkit.predict_array`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = ["__version__", "check", "evaluate", "export", "load_run", "predict", "predict_array", "resume", "train"]


def __getattr__(name: str):
    """Import lazily: `import unetkit` stays fast for the CLI's --help. `train`, `predict` and `evaluate` are
    also the package and modules that do the work (and `export`); they are callable (api.make_module_callable), and returned
    as such so that the name means one object however it was first reached."""
    if name in ("train", "predict", "evaluate", "export"):
        return importlib.import_module(f"unetkit.{name}")
    if name in ("load_run", "check", "resume", "predict_array"):
        from unetkit import api

        return getattr(api, name)
    raise AttributeError(name)
