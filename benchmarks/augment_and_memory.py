"""Augmentation cost against the training step, and peak memory of predicting a large image (issue 3).

Part 1, augmentation: for the default recipe's batch (8 x 1 x 128 x 128, padded
U-Net width 16 depth 4, ce+dice, AdamW) and the paper recipe's batch
(1 x 1 x 572 x 572 with a weight map, unet-classic width 64 depth 4, weighted-ce,
SGD momentum 0.99; labels and weights centre-cropped to 388 after augmentation,
as the trainer does), time the "default" and "paper" augmentations and one full
training step (forward, loss, backward, optimizer step). Warm-up first, then the
median of several repeats; the ratio is augmentation time / step time.

Part 2, prediction memory: a random uint8 image (8192 x 8192; 2048 x 2048 with
--quick) is written as an uncompressed TIFF, and every measurement runs in its
own subprocess so that its peak RSS (getrusage ru_maxrss) is clean:

Peak RSS is the child's VmHWM (/proc/self/status), with getrusage(RUSAGE_SELF)
ru_maxrss alongside: Linux carries the parent's RSS over fork + exec into
ru_maxrss (not into VmHWM), so part 2 runs first, while the parent is small.

* baseline: imports the same modules and builds the (untrained) model;
* baseline + one tile: the same plus one forward pass on one tile, i.e. the
  network's own working memory at the tile size;
* streaming: what `unetkit predict` does per page: read_pages_lazily +
  predict_page (row bands through predict_rows) with a minimal Run, then
  encoding.to_values + write_mask of the class map (PNG);
* non-streaming (padded model only): the naive whole-image sliding window, the
  normalised image as one float32 tensor plus a K x H x W float32 accumulator
  and an H x W weight map, with the same windows, halos and Gaussian weights.
  It is written frugally (in-place division, argmax in row blocks), so its peak
  is close to its unavoidable buffers, which are also printed.

The classic (valid) model is measured with base_width 16, not 64: the 31 M
parameter network would need ~ 22 x 22 tiles of 572 x 572 at several seconds
each on a CPU. Prediction memory is dominated by the image, the band buffers
and the activations of one tile, not by the weights (31 M params = 118 MiB
would add to the baseline, which is subtracted).

Run: .venv/bin/python benchmarks/augment_and_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MIB = 1 << 20


def _threads() -> int:
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def _peak_rss_mib() -> float:
    """getrusage ru_maxrss of this process in MiB (Linux reports kilobytes).

    Caution: Linux carries ru_maxrss over fork + exec, so a child's value is at
    least its parent's RSS at the fork; `_vm_hwm_mib` is the clean per-process peak.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB


def _vm_hwm_mib() -> float | None:
    """Peak RSS of this process image (VmHWM of /proc/self/status, reset by exec), in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MIB
    except OSError:
        pass
    return None


def _median_s(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- part 1: augmentation against the training step -----------------------------------


def _recipe_case(name: str):
    """(description, model, loss function, optimizer, images, labels, weights, margin) of one recipe's batch."""
    from unetkit.losses import get_loss
    from unetkit.models import build_model

    g = torch.Generator().manual_seed(0)
    if name == "default":
        model = build_model("unet", in_channels=1, num_classes=2, base_width=16, depth=4, bilinear=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        images = torch.rand(8, 1, 128, 128, generator=g)
        labels = torch.randint(0, 2, (8, 128, 128), generator=g)
        return "default: 8x1x128x128, unet w16 d4, ce+dice, AdamW", model, get_loss("ce+dice"), optimizer, images, labels, None, 0
    model = build_model("unet-classic", in_channels=1, num_classes=2, base_width=64, depth=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99, weight_decay=0.0)
    images = torch.rand(1, 1, 572, 572, generator=g)
    labels = torch.randint(0, 2, (1, 572, 572), generator=g)
    weights = 0.5 + 9.5 * torch.rand(1, 572, 572, generator=g)  # random positive weight map (border weights span ~1..10)
    return ("paper: 1x1x572x572 + weights, unet-classic w64 d4, weighted-ce, SGD m0.99", model, get_loss("weighted-ce"),
            optimizer, images, labels, weights, model.margin)


def augmentation_rows(quick: bool) -> list[dict]:
    from unetkit.data.augment import augment_batch

    rows = []
    for recipe in ("default", "paper"):
        description, model, loss_fn, optimizer, images, labels, weights, margin = _recipe_case(recipe)
        generator = torch.Generator().manual_seed(1)

        def crop(x: torch.Tensor) -> torch.Tensor:
            return x[..., margin : x.shape[-2] - margin, margin : x.shape[-1] - margin] if margin else x

        def augmented(name: str):
            if weights is None:
                out_images, out_labels = augment_batch(name, images, labels, generator)
                return out_images, crop(out_labels), None
            out_images, out_labels, out_weights = augment_batch(name, images, labels, generator, weights=weights)
            return out_images, crop(out_labels), crop(out_weights)

        step_images, step_labels, step_weights = augmented("default")
        model.train()

        def step() -> None:
            logits = model(step_images)
            if step_weights is None:
                loss = loss_fn(logits.float(), step_labels)
            else:
                loss = loss_fn(logits.float(), step_labels, weights=step_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()

        if recipe == "default":
            step_warmup, step_repeats = (1, 3) if quick else (3, 10)
        else:
            step_warmup, step_repeats = (1, 1) if quick else (1, 3)
        aug_warmup, aug_repeats = (2, 5) if quick else (3, 30)
        step_s = _median_s(step, step_warmup, step_repeats)
        for name in ("default", "paper"):
            aug_s = _median_s(lambda: augmented(name), aug_warmup, aug_repeats)
            rows.append({
                "recipe": recipe, "batch": description, "augment": name + (" (+weights)" if weights is not None else ""),
                "aug_ms": aug_s * 1e3, "step_ms": step_s * 1e3, "ratio_pct": 100 * aug_s / step_s,
                "aug_repeats": aug_repeats, "step_repeats": step_repeats,
            })
        del model, optimizer
    return rows


# --- part 2: prediction memory, one child process per measurement -----------------------


def _child_model(kind: str):
    from unetkit.models import build_model

    if kind == "padded":
        return build_model("unet", in_channels=1, num_classes=2, base_width=16, depth=4, bilinear=True), 512
    return build_model("unet-classic", in_channels=1, num_classes=2, base_width=16, depth=4), 572


def _child_run(model):
    from unetkit.config import TrainConfig
    from unetkit.data.labels import LabelEncoding
    from unetkit.data.normalize import Normalization
    from unetkit.run import Run

    return Run(
        path=Path("."), record={}, config=TrainConfig(), encoding=LabelEncoding(values=(0, 255), dtype="uint8"),
        normalization=Normalization("scale", (0.0,), (255.0,), "uint8"), model=model,
    )


def _naive_sliding_window(model, image: torch.Tensor, tile: int, overlap: float = 0.25) -> np.ndarray:
    """Whole-image sliding window: same windows, halos and Gaussian weights as `sliding_window`, full-size buffers."""
    from unetkit.predict import gaussian_window, tile_probabilities, window_spans

    _, height, width = image.shape
    align = 2 ** model.config.depth
    halo = tile // 4
    halo -= halo % align
    rows, cols = window_spans(height, tile, overlap, align), window_spans(width, tile, overlap, align)
    total = None  # K x H x W
    weight = torch.zeros(height, width)
    for top, bottom in rows:
        for left, right in cols:
            above, below = min(halo, top), min(halo, height - bottom)
            before, after = min(halo, left), min(halo, width - right)
            patch = image[:, top - above : bottom + below, left - before : right + after][None]
            probs = tile_probabilities(model, patch, False)[0]
            probs = probs[:, above : above + bottom - top, before : before + right - left]
            window = gaussian_window(bottom - top, right - left)
            if total is None:
                total = torch.zeros(probs.shape[0], height, width)
            total[:, top:bottom, left:right] += probs * window
            weight[top:bottom, left:right] += window
    total /= weight  # in place: no second K x H x W tensor
    classes = np.empty((height, width), dtype=np.uint8)
    for start in range(0, height, 256):  # argmax in row blocks: no H x W int64 map
        classes[start : start + 256] = total[:, start : start + 256].argmax(0).numpy()
    return classes


@torch.no_grad()
def child_main(spec: dict) -> dict:
    """One measurement in a fresh process; returns its numbers (printed as JSON by the caller)."""
    from unetkit.data.io import LAZY_BYTES, read_pages_lazily, write_mask  # the modules `unetkit predict` loads
    from unetkit.predict_files import predict_page

    threads = _threads()
    model, tile = _child_model(spec["model"])
    model.eval()
    result = {"threads": threads, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    mode = spec["mode"]
    if mode == "tile":  # one forward at the size the predictor feeds the network
        from unetkit.predict import tile_probabilities

        size = tile + 2 * (tile // 4 - (tile // 4) % 2**model.config.depth) if spec["model"] == "padded" else tile
        start = time.perf_counter()
        tile_probabilities(model, torch.rand(1, 1, size, size), False)
        result.update(tile_input=size, seconds=time.perf_counter() - start)
    elif mode in ("stream", "naive"):
        run = _child_run(model)
        out = Path(spec["out"])
        start = time.perf_counter()
        pages = read_pages_lazily(Path(spec["image"]))
        page = pages[0]
        result["memory_mapped"] = isinstance(pages, np.memmap) or isinstance(getattr(pages, "base", None), np.memmap)
        result["lazy_bytes_mib"] = LAZY_BYTES / MIB
        if mode == "stream":  # predict_page returns the mask in the labels' values, as predict writes it
            mask = predict_page(run, page, spec["image"], tile, False, torch.device("cpu"))
        else:
            image = torch.from_numpy(run.normalization.apply(np.asarray(page), spec["image"]))  # C x H x W float32
            classes = _naive_sliding_window(model, image, tile)
            del image
        result["seconds"] = time.perf_counter() - start
        result["predict_peak_rss_mib"] = _vm_hwm_mib()  # before the class map is written
        start = time.perf_counter()
        if mode != "stream":
            mask = run.encoding.to_values(classes)
        result["foreground_fraction"] = float((mask == run.encoding.values[-1]).mean())
        write_mask(out / f"{spec['name']}.png", mask)
        result["write_seconds"] = time.perf_counter() - start
    result["ru_maxrss_mib"] = _peak_rss_mib()
    hwm = _vm_hwm_mib()
    result["peak_rss_mib"] = result["ru_maxrss_mib"] if hwm is None else hwm
    return result


def run_child(spec: dict) -> dict:
    completed = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)], capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def memory_rows(size: int, workdir: Path) -> tuple[list[dict], dict]:
    import tifffile

    image_path = workdir / f"random_{size}.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(image_path, rng.integers(0, 256, (size, size), dtype=np.uint8), photometric="minisblack")
    out = workdir / "out"
    out.mkdir()
    common = {"image": str(image_path), "out": str(out)}
    plan = [
        ("baseline (torch + padded model)", {"model": "padded", "mode": "baseline"}),
        ("baseline + one padded tile forward", {"model": "padded", "mode": "tile"}),
        ("padded streaming (predict_page)", {"model": "padded", "mode": "stream"}),
        ("padded non-streaming (whole image)", {"model": "padded", "mode": "naive"}),
        ("baseline (torch + classic w16 model)", {"model": "classic", "mode": "baseline"}),
        ("baseline + one classic tile forward", {"model": "classic", "mode": "tile"}),
        ("classic w16 streaming (predict_page)", {"model": "classic", "mode": "stream"}),
    ]
    rows = []
    for label, spec in plan:
        print(f"  running: {label} ...", flush=True)
        result = run_child({**common, **spec, "name": spec["model"] + "_" + spec["mode"]})
        rows.append({"label": label, **spec, **result})
    info = {"image_mib": image_path.stat().st_size / MIB, "size": size}
    return rows, info


# --- report ------------------------------------------------------------------------------


def print_report(aug: list[dict], mem: list[dict], info: dict, elapsed_s: float) -> str:
    lines = []
    say = lines.append
    say(f"threads: {torch.get_num_threads()}  torch {torch.__version__}")
    say("")
    say("1. Augmentation per batch vs one training step (median; step = forward + loss + backward + optimizer step)")
    say(f"{'recipe batch':<76} {'augment':<18} {'aug ms':>9} {'step ms':>9} {'aug/step':>9}")
    for r in aug:
        say(f"{r['batch']:<76} {r['augment']:<18} {r['aug_ms']:>9.2f} {r['step_ms']:>9.1f} {r['ratio_pct']:>8.2f}%")
    reps = {(r["recipe"]): (r["aug_repeats"], r["step_repeats"]) for r in aug}
    say("repeats (augmentation, step): " + ", ".join(f"{k} {v[0]}, {v[1]}" for k, v in reps.items()))
    say("")
    size = info["size"]
    say(f"2. Peak RSS predicting a {size} x {size} uint8 TIFF ({info['image_mib']:.0f} MiB on disk), one subprocess each")
    say("   peak = VmHWM of the child after predicting (before writing); + write = VmHWM at the end, after to_values + PNG")
    say("   - base = above the baseline child of the same model; ru_maxrss = getrusage(RUSAGE_SELF) in the child at the end")
    say(f"   (ru_maxrss includes the parent's RSS at the fork, {info.get('parent_rss_at_children_mib') or 0:.0f} MiB here; "
        "predict s includes reading the TIFF; write s = to_values + PNG)")
    say(f"{'measurement':<40} {'peak MiB':>9} {'- base':>8} {'+ write':>8} {'- base':>8} {'ru_maxrss':>10} {'predict s':>10} {'write s':>8}  notes")
    base = {}
    for r in mem:
        if r["mode"] == "baseline":
            base[r["model"]] = r["peak_rss_mib"]
        predict_peak = r.get("predict_peak_rss_mib") or r["peak_rss_mib"]
        above = predict_peak - base[r["model"]]
        with_write = f"{r['peak_rss_mib']:.0f}" if "write_seconds" in r else "-"
        with_write_above = f"{r['peak_rss_mib'] - base[r['model']]:.0f}" if "write_seconds" in r else "-"
        seconds = f"{r['seconds']:.1f}" if "seconds" in r else "-"
        write = f"{r['write_seconds']:.1f}" if "write_seconds" in r else "-"
        notes = []
        if r["mode"] == "baseline":
            notes.append(f"{r['params_m']:.2f} M params")
        if r["mode"] == "tile":
            notes.append(f"tile input {r['tile_input']}")
        if "memory_mapped" in r:
            notes.append("page memory-mapped" if r["memory_mapped"] else f"page read into memory (< LAZY_BYTES {r['lazy_bytes_mib']:.0f} MiB)")
        say(f"{r['label']:<40} {predict_peak:>9.0f} {above:>8.0f} {with_write:>8} {with_write_above:>8} {r['ru_maxrss_mib']:>10.0f} "
            f"{seconds:>10} {write:>8}  {'; '.join(notes)}")
    by = {(r["model"], r["mode"]): r for r in mem}
    stream, naive = by[("padded", "stream")], by[("padded", "naive")]
    pixels = size * size
    buffers = pixels * (4 + 2 * 4 + 4) / MIB  # float32 image + 2 x float32 accumulator + float32 weights

    def ratios(key: str) -> tuple[float, float]:
        a, b = stream.get(key) or stream["peak_rss_mib"], naive.get(key) or naive["peak_rss_mib"]
        return a / b, (a - base["padded"]) / max(b - base["padded"], 1e-9)

    ratio_rss, ratio_above = ratios("predict_peak_rss_mib")
    write_rss, write_above = ratios("peak_rss_mib")
    say(f"non-streaming unavoidable buffers: float32 image + 2 x H x W float32 accumulator + H x W weights = {buffers:.0f} MiB "
        f"(+ raw uint8 page {pixels / MIB:.0f} MiB + uint8 class map {pixels / MIB:.0f} MiB)")
    say(f"writing: encoding.to_values indexes with the class map into an H x W int64 array ({8 * pixels / MIB:.0f} MiB) before the cast")
    say(f"padded streaming / non-streaming peak RSS while predicting: {ratio_rss:.2f} (total), {ratio_above:.2f} (above baseline); "
        f"including the write: {write_rss:.2f}, {write_above:.2f}")
    say("classic model measured with base_width 16 (not 64) to keep the CPU run short; memory is set by image, bands and activations")
    say("")
    summary = (
        f"SUMMARY: augmentation/step default recipe {aug[0]['ratio_pct']:.1f}% (default aug) / {aug[1]['ratio_pct']:.1f}% (paper aug), "
        f"paper recipe {aug[2]['ratio_pct']:.2f}% / {aug[3]['ratio_pct']:.2f}%; peak RSS at {size}^2: "
        f"padded streaming {stream['predict_peak_rss_mib']:.0f} MiB vs non-streaming {naive['predict_peak_rss_mib']:.0f} MiB "
        f"while predicting (ratio {ratio_rss:.2f}, {ratio_above:.2f} above the {base['padded']:.0f} MiB baseline; "
        f"{stream['peak_rss_mib']:.0f} vs {naive['peak_rss_mib']:.0f} MiB with the write), "
        f"classic w16 streaming {by[('classic', 'stream')]['predict_peak_rss_mib']:.0f} MiB "
        f"({by[('classic', 'stream')]['peak_rss_mib']:.0f} with the write); total {elapsed_s:.0f} s"
    )
    say(summary)
    text = "\n".join(lines)
    print(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: 2048 x 2048 image, fewer repeats (< 2 minutes)")
    parser.add_argument("--size", type=int, default=None, help="image side for part 2 (default 8192, 2048 with --quick)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw measurements to this JSON file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child_main(json.loads(args.child))))
        return
    started = time.perf_counter()
    _threads()
    size = args.size or (2048 if args.quick else 8192)
    print(f"augment_and_memory: {'quick' if args.quick else 'full'} run, image {size} x {size}, {torch.get_num_threads()} threads", flush=True)
    # Part 2 first: Linux carries a parent's RSS into its children's ru_maxrss, so the children
    # are started while this process is still small (the peaks reported are VmHWM, clean anyway).
    print("part 2: prediction memory (one subprocess per measurement) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="unetkit-bench-") as tmp:
        mem, info = memory_rows(size, Path(tmp))
    info["parent_rss_at_children_mib"] = _vm_hwm_mib()
    print("part 1: augmentation vs training step ...", flush=True)
    aug = augmentation_rows(args.quick)
    print()
    elapsed = time.perf_counter() - started
    if args.json is not None:
        args.json.write_text(json.dumps({"augmentation": aug, "memory": mem, "image": info, "elapsed_s": elapsed}, indent=1) + "\n")
    print_report(aug, mem, info, elapsed)


if __name__ == "__main__":
    main()
