"""unetkit: U-Net segmentation for microscopy images that trains well on a CPU.

The command line (`unetkit train / predict / evaluate / demo`) is a thin layer
over these functions.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "load_run", "predict", "train"]


def __getattr__(name: str):
    """Import lazily: `import unetkit` stays fast for the CLI's --help."""
    if name == "train":
        from unetkit.train.start import train

        return train
    if name == "predict":
        from unetkit.predict_files import predict_paths

        return predict_paths
    if name == "evaluate":
        from unetkit.evaluate import evaluate_paths

        return evaluate_paths
    if name == "load_run":
        from unetkit.run import load_run

        return load_run
    raise AttributeError(name)
