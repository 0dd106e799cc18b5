"""Quality against training time: the planned default `unetkit train` and the seed recipe (issue 5).

    .venv/bin/python benchmarks/budget.py [--data ../shared/data/isbi2012] [--budgets 2m,5m,10m,20m]
                                          [--recipes default,seed] [--quick] [--keep DIR]

For every budget and recipe: train on ISBI 2012 sections 0-24 (the run holds
out its own validation block from them), predict sections 25-29 with
`unetkit predict`, score them with `unetkit evaluate` (pixel error = fraction
misclassified, membrane Dice, the challenge's thinned, foreground-restricted
adapted Rand error of the masks and, as the challenge scored probability maps, at the
best threshold; VI split/merge). Prints one table, appends it with the
command, machine and date to benchmarks/RESULTS.md, and records its rows in
benchmarks/budget.csv, where they replace the rows of the same recipe and
budget (so a rerun of one recipe keeps the other's latest rows, each with its
date). benchmarks/budget.png (Rand error and pixel error against minutes) draws
every row of budget.csv. The full default run takes 2 x 37 minutes of training.
--quick trains 10 s and 20 s on the default recipe only, writes nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from isbi_runs import SCORE_COLUMNS, add_data_argument, finish, format_table, run_main, train_and_score
from unetkit.config import parse_duration
from unetkit.demo import link_isbi_subsets
from unetkit.train.recipes import recipe

HERE = Path(__file__).parent
PLOT = HERE / "budget.png"
ROWS = HERE / "budget.csv"


def merge_rows(old: list[dict[str, str]], new: list[dict[str, str]]) -> list[dict[str, str]]:
    """The latest row of every (recipe, budget): `new` replaces `old` rows of the same pair; sorted by recipe
    (in order of first appearance) and budget."""
    latest = {(row["recipe"], row["budget_s"]): row for row in old + new}
    recipes = list(dict.fromkeys(row["recipe"] for row in old + new))
    return sorted(latest.values(), key=lambda row: (recipes.index(row["recipe"]), float(row["budget_s"])))


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as handle:
        columns = list(dict.fromkeys(key for row in rows for key in row))  # rows of an older run may lack a column
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict[str, str]], path: Path) -> None:
    """Rand error and pixel error against the budget, one line per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for index, name in enumerate(dict.fromkeys(row["recipe"] for row in rows)):
        mine = [row for row in rows if row["recipe"] == name]
        minutes = [float(row["budget_s"]) / 60 for row in mine]
        colour = f"C{index}"  # one colour per recipe in both panels; dashed = Rand at the best threshold
        dates = ", ".join(sorted({row.get("date", "")[:10] for row in mine} - {""}))
        named = f"{name} ({dates})" if dates else name
        for axis, column, title, label in ((axes[0], "rand_err", "adapted Rand error", f"{named}: masks"),
                                           (axes[0], "rand_thr", "adapted Rand error", f"{name}: best threshold"),
                                           (axes[1], "pixel_err", "pixel error", named)):
            style = "--" if column == "rand_thr" else "-"
            axis.plot(minutes, [float(row[column]) for row in mine], style, color=colour, marker="o", label=label)
            axis.set_title(title)
            axis.set_xlabel("training budget (minutes)")
            axis.set_xscale("log")
            axis.minorticks_off()
            axis.set_xticks(minutes, [f"{m:g}" for m in minutes])
            axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle("ISBI 2012 sections 25-29, lower is better")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--budgets", default="2m,5m,10m,20m", help="comma-separated training budgets")
    parser.add_argument("--recipes", default="default,seed", help="comma-separated recipe names")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 s and 20 s, default recipe, nothing recorded")
    parser.add_argument("--keep", type=Path, help="keep runs and predictions here (default: a temporary folder)")
    args = parser.parse_args()
    budgets = [10.0, 20.0] if args.quick else [parse_duration(b) for b in args.budgets.split(",")]
    recipes = ["default"] if args.quick else args.recipes.split(",")
    work = args.keep or Path(tempfile.mkdtemp(prefix="unetkit-budget-"))
    train_dir, test_dir = link_isbi_subsets(args.data, work / "data")
    header = ["recipe", "budget_s", *SCORE_COLUMNS]
    rows: list[dict[str, str]] = []
    started = time.monotonic()
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for name in recipes:
        for budget_s in budgets:
            tag = f"{name}-{budget_s:.0f}s"
            config = replace(recipe(name), budget_s=budget_s, epochs=None)
            cells = train_and_score(config, train_dir, test_dir, work / f"run-{tag}", work / f"pred-{tag}")
            rows.append({"recipe": name, "budget_s": f"{budget_s:.0f}", **cells})
            print(" | ".join(rows[-1].values()), flush=True)
    if not args.quick:
        recorded = merge_rows(read_rows(ROWS), [{"date": today, **row} for row in rows])
        write_rows(ROWS, recorded)
        plot(recorded, PLOT)
    finish(format_table([header] + [list(row.values()) for row in rows]), started,
           "Quality against training time on ISBI 2012 (issue 5)",
           ["Train on sections 0-24, evaluate `unetkit predict`'s masks of 25-29 with `unetkit evaluate`; "
            "plot: benchmarks/budget.png (the latest row of each recipe and budget, from benchmarks/budget.csv)"],
           not args.quick, work, bool(args.keep))

if __name__ == "__main__":
    run_main(main)
