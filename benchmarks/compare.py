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
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from isbi_runs import SCORE_COLUMNS, add_data_argument, finish, format_table, run_main, train_and_score
from unetkit.config import TrainConfig, parse_duration
from unetkit.demo import link_isbi_subsets
from unetkit.train.recipes import recipe

def contenders(budget_s: float) -> dict[str, TrainConfig]:
    """The four models, each stopped by the same budget only."""
    stop = dict(budget_s=budget_s, epochs=None)
    return {
        "seed recipe (padded U-Net w64, whole images)": replace(recipe("seed"), **stop),
        "default recipe (planned padded U-Net, patches)": replace(recipe("default"), **stop),
        "paper recipe (classic U-Net w64, 572 tiles)": replace(recipe("paper"), **stop),
        "fcn8s (w32, default recipe's training)": replace(recipe("default"), model="fcn8s", base_width=32, **stop),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--budget", default="15m", help="training time per model (default 15m)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 15 s per model, results not recorded")
    parser.add_argument("--keep", type=Path, help="keep runs and predictions here (default: a temporary folder)")
    args = parser.parse_args()
    budget_s = 15.0 if args.quick else parse_duration(args.budget)
    work = args.keep or Path(tempfile.mkdtemp(prefix="unetkit-compare-"))
    train_dir, test_dir = link_isbi_subsets(args.data, work / "data")
    header = ["model", *SCORE_COLUMNS]
    rows = [header]
    started = time.monotonic()
    for name, config in contenders(budget_s).items():
        run_dir, pred_dir = work / f"run-{len(rows)}", work / f"pred-{len(rows)}"
        cells = train_and_score(config, train_dir, test_dir, run_dir, pred_dir)
        rows.append([name, *cells.values()])
        print(" | ".join(rows[-1]), flush=True)
    finish(format_table(rows), started, "Equal-budget comparison on ISBI 2012 (issue 4)",
           [f"Train on sections 0-24 ({budget_s:.0f} s each, validation included), evaluate on 25-29 (pixel error, "
            "membrane Dice, foreground-restricted adapted Rand error, VI split/merge in bits)."],
           not args.quick, work, bool(args.keep), scope=f"budget {budget_s:.0f} s per model; ")

if __name__ == "__main__":
    run_main(main)
