"""Peak memory of predicting a large TIFF stack against predicting one of its pages: does it grow with the stack?

    .venv/bin/python benchmarks/stack_memory.py [--pages 72] [--size 2048] [--quick] [--record]

A tiny run (width 4, depth 2, a few steps on synthetic pairs: memory here is set by the pages, bands and
outputs, not by the weights) predicts, each case in a subprocess of its own (peak anonymous memory: RssAnon
sampled every 10 ms; VmHWM, which also counts the mapped files' pages, alongside):

- one page of SIZE x SIZE uint8, alone in a TIFF: the baseline of the same run;
- a stack of PAGES such pages, uncompressed in one piece (as Fiji and tifffile write them; over LAZY_BYTES,
  256 MiB, at the default size, so `unetkit predict` memory-maps it and reads a page at a time);
- the same stack deflate-compressed (decoded a page at a time, io.TiffPages, since 2026-12-04 evening; it was
  decoded whole, 1.80 times one page's memory at the default size);
- the same stack as a zarr array, a page a chunk, zstd-compressed (zarr's default; read a page at a time by
  data/zarr_pages.ZarrPages, since 2026-12-04 night).

Each with --prob and --instances 0, so the mask, cell ids and probabilities of every page are written. Before
2026-12-04 a stack's masks were held in a list and stacked (two copies), its cells in memory and its pages read
whole: at 72 pages of 2048^2 that is 288 MiB of input, 576 of masks and 576 of cell ids. The last line reads
`mapped_over_page=X.XX compressed_over_page=Y.YY zarr_over_page=Z.ZZ` (peak anonymous memory above the torch
baseline, stack / one page).
--quick: 16 pages of 512^2, with the memory-mapping threshold lowered to 0 in the children.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from isbi_runs import append_results, machine  # noqa: E402

MIB = 1 << 20


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmHWM: peak RSS, reset by exec; RssAnon: anonymous memory now), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / MIB
    raise OSError(f"no {field} in /proc/self/status (Linux only)")


class AnonymousPeak:
    """The peak of RssAnon, sampled every 10 ms in a thread: the process's own memory. VmHWM also counts the pages
    of memory-mapped files (the outputs being written, a mapped input), which the kernel writes back and drops
    when memory is short; RssAnon is what cannot be dropped."""

    def __init__(self) -> None:
        self.peak = _status_mib("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _status_mib("RssAnon"))

    def __enter__(self) -> "AnonymousPeak":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_mib("RssAnon"))


def _child(run: str, stack: str, out: str, lazy_bytes: int | None) -> None:
    """Predict `stack` into `out` (or, with stack "", only load torch and the run: the baseline); print the peak."""
    from unetkit.data import io
    from unetkit.predict_files import predict_paths
    from unetkit.run import load_run

    if lazy_bytes is not None:
        io.LAZY_BYTES = lazy_bytes
    loaded = load_run(Path(run))
    started = time.perf_counter()
    with AnonymousPeak() as anonymous:
        if stack:
            predict_paths(loaded, [Path(stack)], Path(out), write_probabilities=True, instances=0, progress=False,
                          say=lambda _: None)
    print(json.dumps({"anon_mib": anonymous.peak, "hwm_mib": _status_mib("VmHWM"),
                      "seconds": time.perf_counter() - started}))


def _measure(run: Path, stack: Path | None, out: Path, lazy_bytes: int | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(run), str(stack or ""), str(out),
               "" if lazy_bytes is None else str(lazy_bytes)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write_zarr(path: Path, volume: np.ndarray) -> None:
    """`volume` as a zarr array of one page a chunk (zarr's default codecs), written a page at a time."""
    import zarr

    stored = zarr.create_array(str(path), shape=volume.shape, chunks=(1, *volume.shape[1:]), dtype=volume.dtype)
    for index, page in enumerate(volume):
        stored[index] = page


def _tiny_run(work: Path) -> Path:
    from unetkit.config import TrainConfig
    from unetkit.data.synthetic import make_em_dataset, save_pairs
    from unetkit.train.start import train

    images, labels = save_pairs(work / "data", *make_em_dataset(4, (64, 64)))
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=64, epochs=1, budget_s=None, device="cpu")
    train(images, labels, work / "run", config, progress=False, say=lambda _: None)
    return work / "run"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=None, help="pages of the stack (default 72, 16 with --quick)")
    parser.add_argument("--size", type=int, default=None, help="page side (default 2048, 512 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 pages of 512^2, nothing recorded")
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    parser.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run, stack, out, lazy = args.child
        _child(run, stack, out, int(lazy) if lazy else None)
        return
    pages = args.pages or (16 if args.quick else 72)
    size = args.size or (512 if args.quick else 2048)
    lazy_bytes = 0 if args.quick else None
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        run = _tiny_run(work)
        rng = np.random.default_rng(1)
        page = (rng.random((size, size)) * 255).astype(np.uint8)
        tifffile.imwrite(work / "page.tif", page)
        volume = np.broadcast_to(page, (pages, size, size))
        tifffile.imwrite(work / "mapped.tif", volume, photometric="minisblack")
        tifffile.imwrite(work / "compressed.tif", volume, photometric="minisblack", compression="zlib")
        _write_zarr(work / "volume.zarr", volume)
        stack_mib = pages * size * size / MIB
        rows = {"baseline (torch + run loaded)": _measure(run, None, work / "none", lazy_bytes)}
        for name, file in (("one page", "page.tif"), (f"stack of {pages}, uncompressed", "mapped.tif"),
                           (f"stack of {pages}, deflate", "compressed.tif"), (f"stack of {pages}, zarr", "volume.zarr")):
            rows[name] = _measure(run, work / file, work / f"out-{Path(file).stem}", lazy_bytes)
    base = rows["baseline (torch + run loaded)"]["anon_mib"]
    one = rows["one page"]["anon_mib"] - base
    lines = [f"{'case':34}  {'anon MiB':>9}  {'- base':>7}  {'/ page':>7}  {'VmHWM MiB':>9}  {'seconds':>8}"]
    for name, row in rows.items():
        above = row["anon_mib"] - base
        ratio = f"{above / one:7.2f}" if name != "baseline (torch + run loaded)" else f"{'-':>7}"
        lines.append(f"{name:34}  {row['anon_mib']:9.0f}  {above:7.0f}  {ratio}  {row['hwm_mib']:9.0f}  {row['seconds']:8.1f}")
    mapped = (rows[f"stack of {pages}, uncompressed"]["anon_mib"] - base) / one
    compressed = (rows[f"stack of {pages}, deflate"]["anon_mib"] - base) / one
    in_zarr = (rows[f"stack of {pages}, zarr"]["anon_mib"] - base) / one
    table = "\n".join(lines)
    print(table)
    print(f"\npages of {size} x {size} uint8; the stack is {stack_mib:.0f} MiB of input; with --prob and --instances 0")
    print(f"total {time.monotonic() - started:.0f} s; {machine()}")
    ratios = f"mapped_over_page={mapped:.2f} compressed_over_page={compressed:.2f} zarr_over_page={in_zarr:.2f}"
    print(ratios)
    if args.record and not args.quick:
        append_results("Peak memory of predicting a stack against one of its pages", [
            f"{pages} pages of {size} x {size} uint8 ({stack_mib:.0f} MiB), --prob --instances 0, tiny run (width 4, depth 2)",
            "anon: each case's subprocess peak RssAnon (sampled every 10 ms); '- base' above the child that only loads "
            "torch and the run; VmHWM also counts the pages of the memory-mapped input and outputs"],
            table + f"\n{ratios}")


if __name__ == "__main__":
    main()
