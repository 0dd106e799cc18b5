"""Compare the seed recipe, the default recipe, the paper's U-Net and FCN-8s at equal wall-clock budgets.

    .venv/bin/python benchmarks/compare.py [--data ../shared/data/isbi2012] [--budget 15m] [--quick]

Each model trains on ISBI 2012 sections 0-24 for the same budget (validation
and saving included) and is evaluated on sections 25-29 with `unetkit
evaluate`'s scores. One table, every row from this run; appended with the
command, the machine and the date to benchmarks/RESULTS.md (not with --quick).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from unetkit.config import TrainConfig, parse_duration
from unetkit.demo import link_isbi_subsets
from unetkit.evaluate import evaluate_paths
from unetkit.predict_files import predict_paths
from unetkit.train.recipes import recipe
from unetkit.train.trainer import train

RESULTS = Path(__file__).with_name("RESULTS.md")


def contenders(budget_s: float) -> dict[str, TrainConfig]:
    """The four models, each stopped by the same budget only."""
    stop = dict(budget_s=budget_s, epochs=None)
    return {
        "seed recipe (padded U-Net w64, whole images)": replace(recipe("seed"), **stop),
        "default recipe (padded U-Net w16, patches)": replace(recipe("default"), **stop),
        "paper recipe (classic U-Net w64, 572 tiles)": replace(recipe("paper"), **stop),
        "fcn8s (w32, default recipe's training)": replace(recipe("default"), model="fcn8s", base_width=32, **stop),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("UNETKIT_DATA", "../shared/data/isbi2012")))
    parser.add_argument("--budget", default="15m", help="training time per model (default 15m)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 15 s per model, results not recorded")
    parser.add_argument("--keep", type=Path, help="keep runs and predictions here (default: a temporary folder)")
    args = parser.parse_args()
    budget_s = 15.0 if args.quick else parse_duration(args.budget)
    work = args.keep or Path(tempfile.mkdtemp(prefix="unetkit-compare-"))
    train_dir, test_dir = link_isbi_subsets(args.data, work / "data")
    header = ["model", "pixel_err", "membrane_dice", "rand_err", "vi_split", "vi_merge", "steps", "s/step", "params_M"]
    rows = [header]
    started = time.monotonic()
    for name, config in contenders(budget_s).items():
        run_dir, pred_dir = work / f"run-{len(rows)}", work / f"pred-{len(rows)}"
        record = train(train_dir / "image", train_dir / "label", run_dir, config, progress=False, say=lambda _: None)
        predict_paths(run_dir, [test_dir / "image"], pred_dir, progress=False, say=lambda _: None)
        scores = evaluate_paths(pred_dir, test_dir / "label")
        mean, membrane = scores["mean"], scores["classes"].index(0)
        steps, seconds = record["progress"]["step"], record["progress"]["seconds"]
        from unetkit.run import load_run

        params = sum(p.numel() for p in load_run(run_dir).model.parameters()) / 1e6
        rows.append([name, f"{mean['pixel_error']:.4f}", f"{mean['dice'][membrane]:.4f}", f"{mean['rand_error']:.4f}",
                     f"{mean['vi_split']:.3f}", f"{mean['vi_merge']:.3f}", str(steps), f"{seconds / max(steps, 1):.2f}",
                     f"{params:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)
    print()
    print(table)
    total = time.monotonic() - started
    print(f"\nbudget {budget_s:.0f} s per model; total {total:.0f} s; {machine()}")
    if not args.quick:
        date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(RESULTS, "a") as handle:
            handle.write(f"\n## Equal-budget comparison on ISBI 2012 (issue 4)\n\nCommand: `{' '.join(['.venv/bin/python', *sys.argv])}`\n\n"
                         f"- Machine: {machine()}\n- Date: {date}; total {total:.0f} s\n"
                         f"- Train on sections 0-24 ({budget_s:.0f} s each, validation included), evaluate on 25-29 "
                         "(pixel error, membrane Dice, foreground-restricted adapted Rand error, VI split/merge in bits).\n\n"
                         f"```\n{table}\n```\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
