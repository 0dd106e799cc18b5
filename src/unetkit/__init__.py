"""unetkit: U-Net segmentation for microscopy images that trains well on a CPU.

The command line (`unetkit train / predict / evaluate / demo`) is a thin layer
over these functions (unetkit/api.py): `unetkit.train`, `unetkit.predict`,
`unetkit.evaluate`, `unetkit.check`, `unetkit.resume`, `unetkit.export`, `unetkit.load_run`, `unetkit.predict_array`.
"""

from __future__ import annotations

import importlib
import importlib.util

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
    return submodule(__name__, name)


def submodule(package: str, name: str):
    """The package's submodule `name`, imported on first use, for a package's `__getattr__`: the API's annotations
    name unetkit.run.Run and unetkit.data.validate.CheckReport, which typing.get_type_hints and help() resolve
    without anyone having imported those modules (they import torch, which `import unetkit` does not)."""
    if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
        return importlib.import_module(f"{package}.{name}")
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
