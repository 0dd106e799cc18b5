"""Training curves and panels: PNG files, drawn without touching the host's matplotlib backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.plots import plot_curves, plot_panel

ROWS = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_dice": 0.5 + e / 10, "val_pixel_error": 0.1 / e}
        for e in (1, 2, 3)]


def test_curves_and_panels_are_written_as_png(tmp_path: Path) -> None:
    plot_curves(ROWS, tmp_path / "curves.png")
    image = np.linspace(0, 1, 64 * 48).reshape(48, 64)
    plot_panel(image, image > 0.5, image > 0.4, tmp_path / "panel.png", title="0.png")
    with Image.open(tmp_path / "curves.png") as curves, Image.open(tmp_path / "panel.png") as panel:
        assert curves.size == (1000, 400) and panel.size == (1200, 430)


def test_drawing_leaves_the_hosts_backend_alone(tmp_path: Path) -> None:
    """matplotlib.use("Agg") at import switched a notebook's inline backend off after unetkit.train."""
    script = (f"import matplotlib; matplotlib.use('svg')\n"
              f"from unetkit.plots import plot_curves\n"
              f"plot_curves({ROWS!r}, __import__('pathlib').Path({str(tmp_path / 'c.png')!r}))\n"
              f"print(matplotlib.get_backend())")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["svg"]
    assert (tmp_path / "c.png").is_file()


def test_an_unwritable_home_does_not_add_matplotlib_warnings(tmp_path) -> None:
    """`HOME=/nonexistent unetkit train` began with matplotlib's "mkdir -p failed" and "created a temporary cache
    directory" lines before unetkit said anything (audit)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path / "nonexistent")
    (tmp_path / "nonexistent").touch()  # a file: nothing can be made under it
    done = subprocess.run([sys.executable, "-c", "import unetkit.plots"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
