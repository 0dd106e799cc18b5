"""Training and inference speed: the seed recipe's loop against the unetkit engine, same network (issue 5).

    .venv/bin/python benchmarks/speed.py [--quick] [--steps 4] [--size 2048] [--device cuda]

The network is the seed's: the padded U-Net, width 64, depth 4, bilinear
upsampling (17.3 M parameters). Each measurement runs in its own subprocess so
that its peak memory (VmHWM) is its own:

* seed train: the seed recipe's loop (DESIGN.md): one whole 512 x 512 image
  per step, fp32, NCHW, one sigmoid output, BCE, RMSprop, PyTorch's defaults.
* unetkit train: `Trainer._augmented` + `Trainer._step` on the sampler's
  batches: 4 patches of 256 x 256 (the seed's pixels per step), the engine's
  precision (`auto`) and channels-last, two softmax outputs, CE + Dice, AdamW.
* seed infer: the tutorial's prediction: the whole 2048 x 2048 image in one
  fp32 NCHW forward pass.
* unetkit train compiled: the same with torch.compile, to decide whether the
  engine should compile (its first step includes the compilation).
* unetkit infer: `predict_probabilities` with the window `unetkit predict`
  chooses, under the engine's precision and layout.

Throughput is pixels per second (training: pixels of the batches trained on;
inference: pixels of the image). The multiply-add rate (forward MACs x 3 for
a training step) is given as a fraction of the measured fp32 and bf16 matmul
peaks (4096 x 4096, best of 3). The last line reads
`train_speedup=X.XX infer_speedup=Y.YY`; without --quick the output is
appended to benchmarks/RESULTS.md.

--device cuda runs every part on the GPU (the seed's loop moved there as the
tutorial's GPU users run it, fp32; the engine under its AMP precision), with
CUDA synchronised before each clock reading; the peak memory column is then
the GPU's (torch.cuda.max_memory_allocated), the peaks are 8192^2 matmuls.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

WIDTH, DEPTH, TRAIN_SIZE = 64, 4, 512
DEVICE = torch.device("cpu")  # --device; every part runs there


def synchronize() -> None:
    """CUDA runs asynchronously: a clock read without this times the launches, not the work."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def peak_mib() -> float:
    """This process's peak memory: resident (VmHWM) on the CPU, allocated tensors on a GPU."""
    if DEVICE.type == "cuda":
        return torch.cuda.max_memory_allocated(DEVICE) / 2**20
    return vm_hwm_mib()


def vm_hwm_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def matmul_peak(dtype: torch.dtype, n: int = 4096) -> float:
    """Best of 3 multiply-adds per second of an n x n matmul in `dtype`."""
    a, b = torch.randn(n, n, dtype=dtype, device=DEVICE), torch.randn(n, n, dtype=dtype, device=DEVICE)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        synchronize()
        started = time.perf_counter()
        torch.mm(a, b)
        synchronize()
        best = min(best, time.perf_counter() - started)
    return n**3 / best


def seed_model() -> torch.nn.Module:
    from unetkit.models.unet import UNet, UNetConfig

    return UNet(UNetConfig(in_channels=1, num_classes=1, base_width=WIDTH, depth=DEPTH, bilinear=True, align_corners=True))


def forward_macs_per_pixel() -> float:
    from unetkit.train.planning import unet_macs_per_pixel

    return unet_macs_per_pixel(WIDTH, DEPTH, 1, 2)


def timed(step, steps: int) -> float:
    """Median seconds of `steps` calls after one warm-up call."""
    step()
    timings = []
    for _ in range(steps):
        synchronize()
        started = time.perf_counter()
        step()
        synchronize()
        timings.append(time.perf_counter() - started)
    return float(np.median(timings))


def part_seed_train(steps: int) -> dict:
    """The tutorial's loop, as it is written there (fp32, NCHW, whole image, batch 1)."""
    torch.manual_seed(0)
    model = seed_model().to(DEVICE)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-5, weight_decay=1e-8, momentum=0.9)
    criterion = torch.nn.BCEWithLogitsLoss()
    image = torch.rand(1, 1, TRAIN_SIZE, TRAIN_SIZE, device=DEVICE)
    mask = (torch.rand(1, TRAIN_SIZE, TRAIN_SIZE, device=DEVICE) > 0.5).float()

    def step() -> None:
        loss = criterion(model(image).squeeze(1), mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = timed(step, steps)
    return {"seconds": seconds, "pixels": TRAIN_SIZE**2, "threads": torch.get_num_threads()}


def part_unetkit_train(steps: int, compiled: bool = False) -> dict:
    """The engine's real path: sampler -> augmentation -> autocast step on channels-last tensors."""
    from unetkit.data.synthetic import make_em_dataset, save_pairs
    from unetkit.train.recipes import recipe
    from unetkit.train.setup import prepare_training_data
    from unetkit.run import model_options, new_run_record
    from unetkit.train.trainer import Trainer

    patch, batch = 256, 4
    with tempfile.TemporaryDirectory() as folder:
        images, labels = save_pairs(Path(folder), *make_em_dataset(6, (512, 512), seed=0))
        config = recipe("default").with_overrides(base_width=WIDTH, depth=DEPTH, patch_size=patch, batch_size=batch,
                                                  device=DEVICE.type)
        data = prepare_training_data(images, labels, None, None, config.val_fraction, config.normalization)
        record = new_run_record(config, "unet", model_options(config, 1, 2))
        trainer = Trainer(Path(folder) / "run", config, data, record, progress=False, say=lambda _: None)
        trainer.sampler.start_epoch()
        if compiled:
            trainer.model = torch.compile(trainer.model)

        def step() -> None:
            batch_ = trainer.sampler.batch(0)
            trainer._step(*trainer._augmented(batch_)[:2], batch_.names)

        first_started = time.perf_counter()
        step()  # with compile: tracing and code generation happen here
        synchronize()
        first = time.perf_counter() - first_started
        seconds = timed(step, steps)
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[trainer.amp_dtype]
    return {"seconds": seconds, "pixels": batch * patch**2, "threads": torch.get_num_threads(), "precision": precision,
            "first_step_s": round(first, 1)}


def part_unetkit_train_compiled(steps: int) -> dict:
    """The same with torch.compile (inductor): does it pay off within a 10-minute budget?"""
    return part_unetkit_train(steps, compiled=True)


def part_seed_infer(size: int) -> dict:
    torch.manual_seed(0)
    model = seed_model().to(DEVICE).eval()
    image = torch.rand(1, 1, size, size)

    def run() -> None:  # the image comes from and the mask goes to the host, as a prediction's do
        with torch.no_grad():
            (torch.sigmoid(model(image.to(DEVICE))) > 0.5).cpu().numpy()

    return {"seconds": timed(run, 1), "pixels": size**2, "threads": torch.get_num_threads()}


def part_unetkit_infer(size: int) -> dict:
    from unetkit.engine import autocast_dtype, to_memory_format, configure_process
    from unetkit.losses import most_likely_class
    from unetkit.models.unet import UNet, UNetConfig
    from unetkit.predict import mirrored_reader, predict_rows, prediction_windows

    configure_process()
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=1, num_classes=2, base_width=WIDTH, depth=DEPTH, bilinear=True)).eval()
    model = to_memory_format(model.to(DEVICE), True)
    dtype = autocast_dtype(DEVICE, "auto")
    image = torch.rand(1, size, size)
    tile, overlap, halo = prediction_windows(model, dtype, size, size, 2, DEVICE, None, 0)  # as predict_page

    def run() -> None:  # as predict_page does for a padded network with no --tile (its mask: most_likely_class)
        parts: list[torch.Tensor] = []
        predict_rows(model, mirrored_reader(image), size, size, lambda top, probs: parts.append(most_likely_class(probs)),
                     tile=tile, overlap=overlap, device=DEVICE, amp_dtype=dtype, halo=halo)

    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    return {"seconds": timed(run, 1), "pixels": size**2, "threads": torch.get_num_threads(), "precision": precision,
            "window": "x".join(map(str, tile))}


PARTS = {"seed_train": part_seed_train, "unetkit_train": part_unetkit_train,
         "unetkit_train_compiled": part_unetkit_train_compiled,
         "seed_infer": part_seed_infer, "unetkit_infer": part_unetkit_infer}


def run_part(name: str, argument: int) -> dict:
    """In a fresh interpreter, so that VmHWM is this part's peak alone."""
    output = subprocess.run([sys.executable, __file__, "--part", name, "--argument", str(argument), "--device", DEVICE.type],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 steps, a 1024 x 1024 image; not recorded")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per loop (after one warm-up)")
    parser.add_argument("--size", type=int, default=2048, help="side of the inference image")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where every part runs (default: cpu)")
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--argument", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.part:
        result = PARTS[args.part](args.argument)
        result["peak_mib"] = round(peak_mib())
        print(json.dumps(result))
        return
    steps, size = (2, 1024) if args.quick else (args.steps, args.size)
    started = time.monotonic()
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    from isbi_runs import append_results, machine  # shared by every benchmark

    say(f"machine: {machine()}")
    n = 8192 if DEVICE.type == "cuda" else 4096
    fp32_peak, bf16_peak = matmul_peak(torch.float32, n), matmul_peak(torch.bfloat16, n)
    say(f"device: {DEVICE.type}" + (f" ({torch.cuda.get_device_name(DEVICE)})" if DEVICE.type == "cuda" else ""))
    say(f"matmul peak ({n}^2, MAC/s): fp32 {fp32_peak / 1e9:.1f} G, bf16 {bf16_peak / 1e9:.1f} G")
    results = {}
    for name in ("seed_train", "unetkit_train", "unetkit_train_compiled"):
        results[name] = run_part(name, steps)
    for name in ("seed_infer", "unetkit_infer"):
        results[name] = run_part(name, size)
    macs = forward_macs_per_pixel()
    say(f"network: padded U-Net width {WIDTH} depth {DEPTH} bilinear, {macs / 1e3:.1f} k forward MACs per pixel")
    say(f"{'part':<14} {'Mpx/s':>8} {'s/call':>8} {'GMAC/s':>8} {'of fp32':>8} {'of bf16':>8} {'peak MiB':>9}  how")
    for name, result in results.items():
        rate = result["pixels"] / result["seconds"]
        mac_rate = rate * macs * (3 if "train" in name else 1)
        how = ", ".join(f"{k} {v}" for k, v in result.items() if k in ("precision", "window", "threads", "first_step_s"))
        say(f"{name:<14} {rate / 1e6:8.3f} {result['seconds']:8.2f} {mac_rate / 1e9:8.1f} "
            f"{mac_rate / fp32_peak:8.0%} {mac_rate / bf16_peak:8.0%} {result['peak_mib']:9d}  {how}")
    eager, compiled = results["unetkit_train"], results["unetkit_train_compiled"]
    saved = eager["seconds"] - compiled["seconds"]
    cost = compiled["first_step_s"] - eager["first_step_s"]
    say(f"torch.compile: first step {compiled['first_step_s']} s (eager {eager['first_step_s']} s), "
        f"then {compiled['seconds']:.2f} vs {eager['seconds']:.2f} s/step: "
        + (f"pays off after {cost / saved:.0f} steps" if saved > 0 else "never pays off"))
    speed = {kind: (results[f"unetkit_{kind}"]["pixels"] / results[f"unetkit_{kind}"]["seconds"])
             / (results[f"seed_{kind}"]["pixels"] / results[f"seed_{kind}"]["seconds"]) for kind in ("train", "infer")}
    say(f"total {time.monotonic() - started:.0f} s")
    say(f"train_speedup={speed['train']:.2f} infer_speedup={speed['infer']:.2f}")
    if not args.quick:
        where = "" if DEVICE.type == "cpu" else f", on {DEVICE.type}"
        append_results(f"Training and inference speed, seed loop vs unetkit engine{where} (issue 5)", [], "\n".join(lines))

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
