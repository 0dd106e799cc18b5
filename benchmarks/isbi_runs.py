"""What the ISBI benchmarks share: the machine's description, one train-predict-evaluate run, a table.

compare.py (models at one budget) and budget.py (recipes across budgets) both
train on sections 0-24 and score `unetkit predict`'s masks of sections 25-29
with `unetkit evaluate`, so that their rows mean the same thing.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from argparse import ArgumentParser
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from unetkit.config import TrainConfig
from unetkit.errors import InputError
from unetkit.evaluate import evaluate_paths, evaluate_probabilities
from unetkit.predict_files import predict_paths
from unetkit.run import load_run
from unetkit.train.start import train

SCORE_COLUMNS = ["pixel_err", "membrane_dice", "rand_err", "rand_thr", "vi_split", "vi_merge", "steps", "s/step", "params_M"]
# rand_err: the masks `unetkit predict` writes (argmax); rand_thr: the challenge's protocol on the probability
# maps, the best of the thresholds 0.1 ... 0.9 (`unetkit evaluate --instances threshold`). Both thinned.


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def train_and_score(
    config: TrainConfig, train_dir: Path, test_dir: Path, run_dir: Path, pred_dir: Path, fixed: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Train on train_dir (the planner keeps the fields in `fixed`), predict test_dir's images, score them:
    the table's cells for this run."""
    train(train_dir / "image", train_dir / "label", run_dir, config, progress=False, say=lambda _: None, fixed=fixed)
    return score_run(run_dir, test_dir, pred_dir)


def score_run(run_dir: Path, test_dir: Path, pred_dir: Path, tta: bool = False) -> dict[str, str]:
    """Predict test_dir's images with a trained run (`unetkit predict`, with or without --tta), score them."""
    run = load_run(run_dir)  # loaded once: predict_paths takes the Run, and its record and size go in the table
    predict_paths(run, [test_dir / "image"], pred_dir, tta=tta, write_probabilities=True, progress=False,
                  say=lambda _: None)
    scores = evaluate_paths(pred_dir, test_dir / "label")
    swept = evaluate_probabilities(pred_dir, test_dir / "label", instances="threshold")["mean"]
    mean, membrane = scores["mean"], scores["classes"].index(0)
    steps, seconds = run.record["progress"]["step"], run.record["progress"]["seconds"]
    params = sum(p.numel() for p in run.model.parameters()) / 1e6
    values = [f"{mean['pixel_error']:.4f}", f"{mean['dice'][membrane]:.4f}", f"{mean['rand_error']:.4f}", f"{swept['rand_error']:.4f}",
              f"{mean['vi_split']:.3f}", f"{mean['vi_merge']:.3f}", str(steps), f"{seconds / max(steps, 1):.2f}",
              f"{params:.2f}"]
    return dict(zip(SCORE_COLUMNS, values))


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned columns, the first row being the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


RESULTS = Path(__file__).with_name("RESULTS.md")


def append_results(title: str, details: list[str], body: str) -> None:
    """One section of benchmarks/RESULTS.md: title, the command as run, the machine, the date, details, output."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    bullets = [f"- Machine: {machine()}", f"- Date: {stamp}", *(f"- {line}" for line in details)]
    with open(RESULTS, "a") as handle:
        handle.write(f"\n## {title}\n\nCommand: `{' '.join(['.venv/bin/python', *sys.argv])}`\n\n"
                     + "\n".join(bullets) + f"\n\n```\n{body}\n```\n")


def finish(table: str, started: float, title: str, details: list[str], record: bool, work: Path, keep_work: bool,
           scope: str = "") -> None:
    """The end every ISBI benchmark shares: print the table, the time and the machine; when `record`, append them
    to RESULTS.md under `title`; remove the work folder unless the user asked to keep it."""
    total = time.monotonic() - started
    print()
    print(table)
    print(f"\n{scope}total {total:.0f} s; {machine()}")
    if record:
        append_results(title, [f"Total {total:.0f} s", *details], table)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)


def add_data_argument(parser: ArgumentParser) -> None:
    """--data: the ISBI 2012 folder, from UNETKIT_DATA or beside the repository by default."""
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("UNETKIT_DATA", "../shared/data/isbi2012")),
                        help="the ISBI 2012 folder (default: $UNETKIT_DATA, else ../shared/data/isbi2012)")


def run_main(main: Callable[[], None]) -> None:
    """A benchmark's bad input (a wrong --data, a missing run) is one line and exit 2, as for the CLI."""
    try:
        main()
    except (InputError, FileNotFoundError, NotADirectoryError) as exc:
        hint = "" if isinstance(exc, InputError) else "; check --data (or UNETKIT_DATA) and the paths given"
        print(f"{Path(sys.argv[0]).name}: error: {exc}{hint}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    sys.exit("isbi_runs.py is what the ISBI benchmarks share, not a benchmark: run budget.py, compare.py, "
             "variants.py, diffusion.py or isbi_sections.py")
