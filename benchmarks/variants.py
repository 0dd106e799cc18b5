"""One budget, several variants of the planned default: which change to the plan gives a better model?

    .venv/bin/python benchmarks/variants.py [--data ../shared/data/isbi2012] [--budget 10m]
        [--variant NAME='{"base_width": 16}' ...] [--tta] [--quick] [--keep DIR]

Each variant trains `unetkit train`'s default recipe on ISBI sections 0-24 with
the given TrainConfig fields fixed (the planner plans the rest around them, as
it does for command-line flags), then predicts sections 25-29 and scores them
like benchmarks/budget.py; with --tta also with test-time augmentation. The
planned default itself ("plan", no fields fixed) is always the first row, the
baseline of the same run. Variants run one after another (2 cores: never two
at once); each costs the budget plus about 20 s. The table is appended to
benchmarks/RESULTS.md. --quick: 10 s, the default and one variant, nothing recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

from isbi_runs import SCORE_COLUMNS, add_data_argument, finish, format_table, run_main, score_run, train_and_score
from unetkit.config import TrainConfig, parse_duration
from unetkit.demo import link_isbi_subsets
from unetkit.train.recipes import recipe


def parse_variant(text: str) -> tuple[str, dict[str, object]]:
    """NAME={"field": value, ...} -> (NAME, fields), refusing fields TrainConfig does not have."""
    name, _, body = text.partition("=")
    overrides = json.loads(body or "{}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if not name or unknown:
        raise SystemExit(f"--variant {text}: give NAME={{json}} with TrainConfig fields (unknown: {', '.join(unknown)})")
    return name, overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--budget", default="10m", help="training budget of every variant")
    parser.add_argument("--variant", action="append", default=[], help='NAME={"field": value}; repeat for more')
    parser.add_argument("--tta", action="store_true", help="also score the predictions with test-time augmentation")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 s, plan and one variant, nothing recorded")
    parser.add_argument("--keep", type=Path, help="keep runs and predictions here (default: a temporary folder)")
    args = parser.parse_args()
    variants = [("plan", {})] + [parse_variant(text) for text in args.variant]
    if args.quick:
        variants = variants[:1] + (variants[1:2] or [("width8", {"base_width": 8})])
    budget_s = 10.0 if args.quick else parse_duration(args.budget)
    work = args.keep or Path(tempfile.mkdtemp(prefix="unetkit-variants-"))
    train_dir, test_dir = link_isbi_subsets(args.data, work / "data")
    header = ["variant", "tta", *SCORE_COLUMNS, "fixed"]
    rows: list[list[str]] = []
    started = time.monotonic()
    for name, overrides in variants:
        config = replace(recipe("default"), budget_s=budget_s, epochs=None, **overrides)
        run_dir = work / f"run-{name}"
        cells = train_and_score(config, train_dir, test_dir, run_dir, work / f"pred-{name}", fixed=frozenset(overrides))
        described = json.dumps(overrides, separators=(",", ":")) if overrides else "-"
        rows.append([name, "no", *cells.values(), described])
        print(" | ".join(rows[-1]), flush=True)
        if args.tta:
            cells = score_run(run_dir, test_dir, work / f"pred-{name}-tta", tta=True)
            rows.append([name, "yes", *cells.values(), described])
            print(" | ".join(rows[-1]), flush=True)
    finish(format_table([header] + rows), started, f"Variants of the planned default at {args.budget} on ISBI 2012 (issue 5)",
           ["Train on sections 0-24 with the fields in `fixed` set and the rest planned, evaluate 25-29 as budget.py does"],
           not args.quick, work, bool(args.keep))

if __name__ == "__main__":
    run_main(main)
