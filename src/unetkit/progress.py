"""The progress bar of a training loop that stops at a step count or at a time budget.

A budgeted run counts seconds, not steps: its bar shows "312/600 s" and no rate, because tqdm's rate
of seconds per second ("1.00s/s") tells the user nothing. Both training loops (segmentation and
diffusion) share this bar so that they read the same.
"""

from __future__ import annotations

from tqdm import tqdm

BUDGET_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}<{remaining}{postfix}]"


class TrainingBar:
    """A tqdm bar over steps (when the run has a step count) or over the budget's seconds."""

    def __init__(self, *, steps: int | None, budget_s: float | None, done: float = 0, progress: bool) -> None:
        self.by_steps = bool(steps)
        common = {"disable": not progress, "dynamic_ncols": True, "leave": True,
                  "mininterval": 1.0}  # a log file gets a line a second, not ten
        if self.by_steps:
            self.bar = tqdm(total=steps, initial=int(done), unit="step", **common)
        else:
            self.bar = tqdm(total=int(budget_s or 0), initial=int(done), bar_format=BUDGET_FORMAT, **common)

    def step(self, elapsed_s: float, **postfix: object) -> None:
        """One step was taken at `elapsed_s` into the run; the postfix (loss, epoch) is drawn with the next redraw."""
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)  # drawn by update(), at most once a second
        if self.by_steps:
            self.bar.update(1)
        else:
            self.clock(elapsed_s)

    def clock(self, elapsed_s: float) -> None:
        """Time passed without a step (validation, saving): a budgeted bar moves on, a step bar stays."""
        if not self.by_steps:
            self.bar.update(max(0, min(self.bar.total, int(elapsed_s)) - self.bar.n))

    def close(self) -> None:
        self.bar.close()
