"""Export a trained run as a stand-alone network: ONNX and TorchScript files that run without unetkit.

Why: a model is most useful where the images are looked at, in Fiji (deepImageJ),
ilastik, napari, QuPath or a lab's own script, and those load ONNX or TorchScript,
not a unetkit run. The exported graph takes the raw image (its pixel values as
float32, B x C x H x W) and returns the class probabilities and the mask in the
training labels' own values: the run's normalisation and its output alignment
(alignment.py) are inside the graph, so a consumer reproduces nothing but the
padding to the network's size step. Every file is loaded back and checked
against the run before the export folder appears; a failed export leaves nothing.

    OUT/model.onnx              ONNX (opset 18), inputs of any batch and any H, W on the size grid
    OUT/model.torchscript.pt    TorchScript, the same graph
    OUT/test_input.npy          a test image and the run's outputs for it, to check a consumer's set-up
    OUT/test_probabilities.npy
    OUT/test_mask.npy
    OUT/export.json             what goes in and out, the size grid, classes, checks, sha256 of the network and test files
    OUT/rdf.yaml                the same as a bioimage.io model description (format 0.5), so that Fiji's
                                deepImageJ, ilastik and the bioimage.io tools load the folder (or OUT.zip)
    OUT/README.md               how to run it, in a few lines

rdf.yaml is written as JSON, which is YAML too: no YAML library is needed.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import json
import logging
import os
import shutil
import string
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from unetkit.alignment import Shift, shift_image
from unetkit.data.calibration import length_unit, readable_length
from unetkit.data.io import list_image_files, missing_folders, read_pages, remove_empty_folders
from unetkit.data.normalize import channels_first
from unetkit.errors import InputError
from unetkit.losses import class_probabilities
from unetkit.predict import pooling_grid
from unetkit.run import (
    Run,
    check_new_run_folder,
    check_writable_folder,
    library_versions,
    load_run,
    read_run_json,
    refuse_inside_inputs,
)

FORMATS = ("onnx", "torchscript")
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
FILES = {"onnx": ONNX_FILE, "torchscript": TORCHSCRIPT_FILE}  # what each format writes
TEST_FILES = ("test_input.npy", "test_probabilities.npy", "test_mask.npy")  # one input and the run's outputs
EXPORT_FILE = "export.json"
BIOIMAGEIO_FILE = "rdf.yaml"
BIOIMAGEIO_FORMAT = "0.5.4"
UNET_PAPER = {"text": "Ronneberger, Fischer and Brox: U-Net: Convolutional Networks for Biomedical Image Segmentation, "
                      "MICCAI 2015", "doi": "10.1007/978-3-319-24574-4_28"}
ONNX_OPSET = 18
CHECK_TOLERANCE = 1e-4  # largest difference in probability an exported file may show against the run
FILE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".gz", ".bz2", ".xz", ".7z", ".rar", ".onnx", ".pt", ".pth",
                 ".torchscript")  # --out names that promise one file; only .zip is written as one
_EXAMPLE_BATCH = 2  # torch.export fixes a dimension traced at size 1


class StandaloneSegmenter(nn.Module):
    """Raw image -> (class probabilities, mask in label values): the run's whole prediction of one window.

    It is what `unetkit predict` computes for an image whose sides lie on the network's size grid
    (no padding, no tiling, no TTA), in fp32.
    """

    def __init__(self, network: nn.Module, low: tuple[float, ...], high: tuple[float, ...],
                 values: tuple[int, ...], shift: Shift | None) -> None:
        super().__init__()
        self.network = network
        self.shift = shift
        self.register_buffer("low", torch.tensor(low, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("high", torch.tensor(high, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("values", torch.tensor(values, dtype=mask_dtype(values)))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normalised = (image - self.low) / (self.high - self.low)  # as Normalization.apply computes it
        probabilities = shift_image(class_probabilities(self.network(normalised)), self.shift)
        return probabilities, self.values[probabilities.argmax(dim=1)]


def mask_dtype(values: tuple[int, ...]) -> torch.dtype:
    """int32 for the mask output, int64 where the labels' values need it (uint32 masks of 3e9, say)."""
    fits = all(-(2**31) <= v < 2**31 for v in values)
    return torch.int32 if fits else torch.int64


@dataclass(frozen=True)
class SizeGrid:
    """The input sides a network takes: minimum + k * step, k = 0, 1, ...; `margin` pixels lost on each side."""

    minimum: int
    step: int
    margin: int = 0

    def at_least(self, near: int) -> int:
        """The smallest grid size that is at least `near`."""
        k = max(0, -(-(near - self.minimum) // self.step))
        return self.minimum + k * self.step

    def at_most(self, near: int) -> int | None:
        """The largest grid size that is at most `near`; None below the minimum."""
        return None if near < self.minimum else self.minimum + (near - self.minimum) // self.step * self.step


def size_grid(run: Run) -> SizeGrid:
    """Where a network's input sides must lie for an exported graph (which has no padding of its own)."""
    name = run.record["model"]["name"]
    if name == "unet-classic":
        model = run.model
        smallest = model.input_size_for_output(1)  # type: ignore[operator]
        return SizeGrid(smallest, 2 ** model.config.depth, model.margin)  # type: ignore[union-attr]
    grid = pooling_grid(run.model)  # 2**depth for a padded U-Net, 32 for an FCN
    return SizeGrid(grid, grid)


@dataclass(frozen=True)
class ModelCard:
    """Who made the model and under which terms: bioimage.io asks for them, the run does not know them."""

    name: str | None = None  # default: the run folder's name
    author: str | None = None  # default: the login name
    license: str = "CC-BY-4.0"  # an SPDX identifier


def export_run(run_dir: Path, out: Path, formats: tuple[str, ...] = FORMATS, card: ModelCard | None = None,
               report: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the run's network as stand-alone files into the new folder `out` (or the zip file `out`
    when it ends in .zip); returns export.json's content."""
    formats = tuple(dict.fromkeys(formats))  # each once, in the order given
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(f"--format {','.join(unknown) or '(none)'}: unknown; choose from {', '.join(FORMATS)}")
    out = Path(out)
    data = read_run_json(Path(run_dir)).get("data") or {}  # a run at all, before anything about where it goes
    _check_export_target(out, Path(run_dir))
    refuse_inside_inputs(out, [data.get(key) for key in ("images", "labels", "val_images", "val_labels")])
    card = card or ModelCard()
    card = ModelCard(_model_name(card.name, Path(run_dir)), card.author or login_name(), _licence(card.license))
    if "onnx" in formats:
        _require_onnx_exporter()
    run = load_run(run_dir, device="cpu", precision="fp32")
    grid = size_grid(run)
    segmenter = StandaloneSegmenter(run.model.to(memory_format=torch.contiguous_format), run.normalization.low,
                                    run.normalization.high, run.encoding.values, run.output_shift).eval()
    test_input, probabilities, mask, test_source = _test_tensors(run, grid, segmenter)
    if not _testable(mask.numpy()):
        report(f"note: the test mask ({test_source}) holds only 0, the network's prediction everywhere it was tried; "
               "bioimage.io's test refuses such a package (values too small to test with): train the run longer, "
               "or export it from a run whose images hold the other classes")

    created = missing_folders(out.parent)  # removed again if the export fails
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the export is an ordinary folder
    try:
        checks: dict[str, Any] = {}
        for fmt in formats:
            writer, checker = _WRITERS[fmt]
            path = writer(segmenter, run, grid, staging)
            checks[fmt] = checker(path, test_input, probabilities.numpy(), mask.numpy())
            report(f"{fmt}: {path.name} written, {checks[fmt]}")
        np.save(staging / "test_input.npy", test_input, allow_pickle=False)
        np.save(staging / "test_probabilities.npy", probabilities.numpy(), allow_pickle=False)
        np.save(staging / "test_mask.npy", mask.numpy(), allow_pickle=False)
        description = _description(run, grid, formats, checks, staging, test_source)
        (staging / EXPORT_FILE).write_text(json.dumps(description, indent=2) + "\n")
        (staging / "README.md").write_text(_readme(description), errors="backslashreplace")  # a Latin-1 run name
        rdf = bioimageio_description(description, card)
        (staging / BIOIMAGEIO_FILE).write_text(json.dumps(rdf, indent=2) + "\n")
        if out.suffix.lower() == ".zip":
            _zip_folder(staging, out)
        else:
            if out.exists():
                out.rmdir()  # empty: check_new_run_folder said so
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty_folders(created)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already unless it failed or was zipped
    return description


def _check_export_target(out: Path, run_dir: Path) -> None:
    """A new folder, or a new .zip, in a place that can be written; never inside the run it exports."""
    if out.resolve().is_relative_to(run_dir.resolve()):
        raise InputError(f"--out {out}: is inside the run {run_dir}; export to a folder of its own")
    not_a_folder = next((s for s in FILE_SUFFIXES if out.name.lower().endswith(s)), None)
    if not_a_folder is not None:
        raise InputError(f"--out {out}: an export is a folder or a .zip file, not a {not_a_folder} file; give a folder "
                         f"name or one ending in .zip")
    if out.suffix.lower() != ".zip":
        check_new_run_folder(out, resumable=False, what="export folder")
        return
    if out.exists():
        raise InputError(f"--out {out}: exists; choose a new name (nothing is overwritten)")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise InputError(f"--out {out}: {blocking} is a file, not a folder; choose another place for the zip")
    check_writable_folder(out.parent, "folder for the zip")


_SPDX_IDS = frozenset(line.strip() for line in (Path(__file__).with_name("spdx_license_ids.txt")).read_text().splitlines()
                      if line.strip() and not line.startswith("#"))


def _licence(given: str) -> str:
    """--license as bioimage.io takes it: an SPDX identifier."""
    if given not in _SPDX_IDS:
        close = sorted(i for i in _SPDX_IDS if i.lower() == given.lower())
        hint = f"did you mean {close[0]}?" if close else "e.g. CC-BY-4.0, CC0-1.0, MIT, BSD-3-Clause"
        raise InputError(f"--license {given}: not an SPDX licence identifier; {hint}")
    return given


def _zip_folder(folder: Path, out: Path) -> None:
    """The folder's files at the top of a zip (how bioimage.io packages are shared), written atomically."""
    partial = out.with_name(f".{out.name}.partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.iterdir()):
                archive.write(path, path.name)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


_NAME_CHARACTERS = set(string.ascii_letters + string.digits + "_+- ()")  # bioimage.io's rule for a model's name


def _model_name(given: str | None, run_dir: Path) -> str:
    """--name as bioimage.io takes it (5-128 letters, digits, spaces, _+-()); by default from the run's folder."""
    if given is not None:
        if not 5 <= len(given) <= 128 or not set(given) <= _NAME_CHARACTERS:
            raise InputError(f"--name {given!r}: bioimage.io takes 5 to 128 letters, digits, spaces and _+-(); "
                             "choose another name")
        return given
    name = "".join(c if c in _NAME_CHARACTERS else "-" for c in run_dir.resolve().name)[:100]
    return name if len(name) >= 5 else f"unetkit {name}"


def login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return "unknown"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _require_onnx_exporter() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise InputError("--format onnx needs the onnx and onnxscript packages: pip install 'unetkit[export]', "
                         "or export with --format torchscript") from None


TEST_OUTPUT = (96, 128)  # the test tensors' output side (not square, so a swapped axis shows)
TEST_CROPS = 20  # crops of the run's images tried for test tensors bioimage.io can test with
TESTABLE = 1e-4  # bioimage.io refuses a test tensor whose values all lie within this of 0


def _testable(array: np.ndarray) -> bool:
    """Whether bioimage.io's checks take `array` as a test tensor (they refuse one of values all near 0)."""
    return array.size > 0 and (float(array.max()) >= TESTABLE or float(array.min()) <= -TESTABLE)


def _test_tensors(run: Run, grid: SizeGrid, segmenter: nn.Module) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, str]:
    """A test input (1 x C x H x W raw values), the run's probabilities and mask for it, and where it came from.

    Crops of the run's held-out (else training) images come first, so that the test mask holds real structure:
    the first crop whose input and outputs bioimage.io can test with (a mask of 0 only, an all-background crop,
    is refused as too small to test) is taken; else a reproducible synthetic field; else the first crop tried.
    """
    height, width = (grid.at_least(side + 2 * grid.margin) for side in TEST_OUTPUT)
    crops, why = _crops_of_training_images(run, grid, height, width)
    first = None
    for image, source in [*crops[:TEST_CROPS], (_synthetic_field(run, height, width), f"a synthetic field ({why})")]:
        with torch.no_grad():
            probabilities, mask = segmenter(torch.from_numpy(image))
        if all(_testable(array) for array in (image, probabilities.numpy(), mask.numpy())):
            return image, probabilities, mask, source
        first = first or (image, probabilities, mask, source)
    assert first is not None
    return first


def _synthetic_field(run: Run, height: int, width: int) -> np.ndarray:
    """Smooth random blobs spanning the training images' value range, reproducibly (seed 0)."""
    rng = np.random.default_rng(0)
    channels = len(run.normalization.low)
    coarse = rng.random((1, channels, height // 8 + 2, width // 8 + 2))
    field = np.kron(coarse, np.ones((1, 1, 8, 8)))[:, :, :height, :width] + 0.1 * rng.standard_normal((1, channels, height, width))
    low = np.asarray(run.normalization.low)[None, :, None, None]
    high = np.asarray(run.normalization.high)[None, :, None, None]
    image = low + field * (high - low)
    dtype = np.dtype(run.normalization.source_dtype)
    if dtype.kind in "ui":  # values the input's dtype can hold, as the description promises
        image = np.clip(np.round(image), np.iinfo(dtype).min, np.iinfo(dtype).max)
    return image.astype(np.float32)


def _crops_of_training_images(run: Run, grid: SizeGrid, height: int, width: int
                              ) -> tuple[list[tuple[np.ndarray, str]], str]:
    """Crops of the images of the run's validation (or training) folder cut to grid sizes, each with where it came
    from: of the last image first (the held-out block is the last one), its centre and then its corners, then of
    the images before it; and why there are none when there are none (the folder is gone or unreadable, other
    channels, smaller than the minimum)."""
    data = run.record.get("data") or {}
    folder = data.get("val_images") or data.get("images")
    try:
        files = list_image_files(Path(folder))[::-1]
    except (InputError, OSError, TypeError):
        return [], "the run's images were not found"
    crops: list[tuple[np.ndarray, str]] = []
    why = "the run's images were not found"
    for file in files[: TEST_CROPS // 5]:
        try:
            page = read_pages(file)[0][-1]
        except (InputError, OSError, IndexError):
            continue
        image = channels_first(page)
        if image.shape[0] != len(run.normalization.low):
            why = f"{file.name} has other channels than the run's"
            continue
        fitted = [grid.at_most(min(want, have)) for want, have in zip((height, width), image.shape[1:])]
        if None in fitted:
            why = (f"the run's images, such as {file.name} ({image.shape[2]} x {image.shape[1]}), are smaller than "
                   f"the network's smallest input, {grid.minimum} px")
            continue
        h, w = fitted
        bottom, right = image.shape[1] - h, image.shape[2] - w
        corners = dict.fromkeys([(bottom // 2, right // 2), (0, 0), (0, right), (bottom, 0), (bottom, right)])
        for top, left in corners:
            crop = np.ascontiguousarray(image[None, :, top : top + h, left : left + w].astype(np.float32))
            where = "" if (top, left) == (bottom // 2, right // 2) else f" at ({left}, {top})"
            crops.append((crop, f"a {w} x {h} crop of {file.name}{where}"))
    return crops, why


def _dynamic_shapes(grid: SizeGrid) -> dict[str, dict[int, Any]]:
    from torch.export import Dim

    batch = Dim("batch", min=1, max=4096)
    height = grid.step * Dim("height_steps", min=0, max=4096) + grid.minimum
    width = grid.step * Dim("width_steps", min=0, max=4096) + grid.minimum
    return {"image": {0: batch, 2: height, 3: width}}


def _example(grid: SizeGrid, channels: int) -> torch.Tensor:
    """The input traced: every dynamic dimension at 2 or more (torch.export fixes one traced at 0 or 1)."""
    width = max(grid.at_least(64), grid.minimum + 2 * grid.step)
    return torch.rand(_EXAMPLE_BATCH, channels, width + grid.step, width)


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters print progress and warn about tracing; the user needs only our one line per file."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        exporter_log.setLevel(level)


def _write_onnx(segmenter: StandaloneSegmenter, run: Run, grid: SizeGrid, folder: Path) -> Path:
    path = folder / ONNX_FILE
    example = _example(grid, len(run.normalization.low))
    with _quiet():
        try:
            program = torch.onnx.export(segmenter, (example,), dynamo=True, opset_version=ONNX_OPSET,
                                        dynamic_shapes=_dynamic_shapes(grid), input_names=["image"],
                                        output_names=["probabilities", "mask"])
        except Exception as exc:  # the exporter wraps a Ctrl-C (or the CLI's SIGTERM) in an error of its own
            interrupt = _interrupt_inside(exc)
            if interrupt is not None:
                raise interrupt from None  # its own type: SIGTERM must still exit 143, not Ctrl-C's 130
            raise
        program.save(str(path))
    return path


def _interrupt_inside(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM among the causes of an exporter's error, if one is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _write_torchscript(segmenter: StandaloneSegmenter, run: Run, grid: SizeGrid, folder: Path) -> Path:
    path = folder / TORCHSCRIPT_FILE
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(segmenter, _example(grid, len(run.normalization.low)), check_trace=False)
        traced.save(str(path))
    return path


def _check_onnx(path: Path, test_input: np.ndarray, probabilities: np.ndarray, mask: np.ndarray) -> str:
    try:
        import onnxruntime
    except ImportError:
        return "not checked (onnxruntime is not installed)"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got_probabilities, got_mask = session.run(["probabilities", "mask"], {"image": test_input})
    return _compare(path, got_probabilities, got_mask, probabilities, mask, "onnxruntime")


def _check_torchscript(path: Path, test_input: np.ndarray, probabilities: np.ndarray, mask: np.ndarray) -> str:
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        got_probabilities, got_mask = loaded(torch.from_numpy(test_input))
    return _compare(path, got_probabilities.numpy(), got_mask.numpy(), probabilities, mask, "torch.jit.load")


def _compare(path: Path, got_probabilities: np.ndarray, got_mask: np.ndarray, probabilities: np.ndarray,
             mask: np.ndarray, runtime: str) -> str:
    if got_probabilities.shape != probabilities.shape or got_mask.shape != mask.shape:
        raise RuntimeError(f"{path.name}: outputs of shape {got_probabilities.shape} where the run gives "
                           f"{probabilities.shape}; please report this as a unetkit bug")
    difference = float(np.abs(got_probabilities - probabilities).max())
    if not difference <= CHECK_TOLERANCE:  # NaN fails this too
        raise RuntimeError(f"{path.name}: probabilities differ from the run's by up to {difference:.2g}; "
                           "please report this as a unetkit bug")
    agree = float(np.mean(got_mask == mask))
    return f"checked with {runtime}: probabilities within {difference:.1e} of the run's, masks agree on {agree:.2%} of pixels"


_WRITERS = {"onnx": (_write_onnx, _check_onnx), "torchscript": (_write_torchscript, _check_torchscript)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _training_pixel_size(run: Run) -> list[float] | None:
    """The training images' pixel (height, width) in metres, where their files declared one (run.json's
    pixel_size): what a tool that rescales inputs to a model's scale (bioimage.io's axis scale) needs."""
    size = run.record.get("pixel_size")
    return None if not size else [float(size["height_m"]), float(size["width_m"])]


def _description(run: Run, grid: SizeGrid, formats: tuple[str, ...], checks: dict[str, str], folder: Path,
                 test_source: str) -> dict[str, Any]:
    files = {FILES[f]: f for f in formats}
    output_size = "the input's" if grid.margin == 0 else f"the input's less {grid.margin} pixels on each side"
    return {
        "format_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_run": Path(run.path).resolve().name,  # the folder's name: the package is shared, its path is private
        "model": run.record["model"],
        "files": {name: {"format": fmt, "sha256": _sha256(folder / name), "check": checks[fmt]}
                  for name, fmt in files.items()},
        "input": {
            "name": "image", "axes": "bcyx", "dtype": "float32", "channels": len(run.normalization.low),
            "values": f"the raw pixel values of {run.normalization.source_dtype} images like the training images "
                      "(the run's normalisation is inside the graph)",
            "size": {"minimum": grid.minimum, "step": grid.step, "margin": grid.margin,
                     "rule": f"H and W each {grid.minimum} + k * {grid.step}; pad other sizes by mirroring, "
                             "then crop the outputs"},
            "pixel_size_m": _training_pixel_size(run),
        },
        "outputs": [
            {"name": "probabilities", "axes": "bcyx", "dtype": "float32", "size": output_size,
             "classes": list(run.encoding.values), "class_names": run.encoding.channel_names()},
            {"name": "mask", "axes": "byx", "dtype": str(mask_dtype(run.encoding.values)).removeprefix("torch."),
             "size": output_size, "values": _mask_values_text(run), "label_dtype": run.encoding.dtype,
             "colour": run.encoding.colour, **_palette(run)},
        ],
        "normalization": run.normalization.to_json(),
        "alignment_shift_px": list(run.output_shift) if run.output_shift else [0.0, 0.0],
        "test": {"input": "test_input.npy", "probabilities": "test_probabilities.npy", "mask": "test_mask.npy",
                 "input_source": test_source,
                 "sha256": {name: _sha256(folder / name) for name in TEST_FILES}},
        "libraries": {name: version for name, version in library_versions().items() if name in ("unetkit", "torch")},
    }



def _palette(run: Run) -> dict[str, Any]:
    """The training masks' palette (palette PNGs), so that a consumer can colour the mask as unetkit predict does:
    index i is drawn in palette[3i:3i+3] (R, G, B)."""
    return {"palette": list(run.encoding.palette)} if run.encoding.palette else {}


def _mask_values_text(run: Run) -> str:
    """What the mask output holds; colour runs pack their RGB classes into one integer."""
    if run.encoding.colour:
        return ("the training labels' colours packed as 0xRRGGBB (red = v >> 16 & 255, green = v >> 8 & 255, "
                "blue = v & 255), the class of highest probability")
    return "the training labels' values (the class of highest probability)"


def _readme(description: dict[str, Any]) -> str:
    size = description["input"]["size"]
    classes = description["outputs"][0]["classes"]
    margin = size.get("margin", 0)
    lines = [
        f"# Segmentation network exported by unetkit from {description['source_run']}",
        "",
        f"Input `image`: float32, batch x {description['input']['channels']} x H x W, "
        f"{description['input']['values']}.",
        f"H and W: {size['rule']} (numpy.pad(..., mode='reflect') at the bottom and right, as unetkit does).",
    ]
    if margin:
        lines[-1] = (f"H and W: {size['rule']}. To segment a whole image of any size as unetkit predict does, "
                     f"mirror it in one call: numpy.pad(image, ((0, 0), (0, 0), ({margin}, {margin} + eh), "
                     f"({margin}, {margin} + ew)), mode='reflect'), with eh and ew the rows and columns that bring H + "
                     f"{2 * margin} and W + {2 * margin} onto that rule (padding in two steps mirrors the mirrored "
                     "margin, and the edges then differ), and cut the output to H x W.")
    pixel = description["input"].get("pixel_size_m")
    if pixel:
        lines += [f"Trained on pixels {readable_length(pixel[1])} wide and {readable_length(pixel[0])} high: images of "
                  "another pixel size segment best rescaled to it (bioimage.io axes: `unit` and `scale`)."]
    if margin:
        lines += [f"The outputs are {margin} pixels smaller on each side than the input (H - {2 * margin} x "
                  f"W - {2 * margin})."]
    out_size = f"(H - {2 * margin}) x (W - {2 * margin})" if margin else "H x W"
    lines += [
        f"Outputs: `probabilities` (batch x {len(classes)} x {out_size}, classes in the order "
        f"{', '.join(description['outputs'][0].get('class_names') or map(str, classes))}) and `mask` "
        f"(batch x {out_size}, {description['outputs'][1]['dtype']}: {description['outputs'][1]['values']}).",
    ]
    if "palette" in description["outputs"][1]:
        lines += ["The training masks were palette images: save `mask` as one with export.json's `outputs[1].palette` "
                  "(Pillow: `image = Image.fromarray(mask[0].astype(np.uint8))`, then `image.putpalette(palette)`)."]
    lines += [
        "",
        "```python",
        "import numpy as np",
    ]
    if ONNX_FILE in description["files"]:
        lines += ["import onnxruntime",
                  f"session = onnxruntime.InferenceSession('{ONNX_FILE}')",
                  "probabilities, mask = session.run(None, {'image': np.load('test_input.npy')})"]
    else:
        lines += ["import torch",
                  f"network = torch.jit.load('{TORCHSCRIPT_FILE}')",
                  "with torch.no_grad():",
                  "    probabilities, mask = network(torch.from_numpy(np.load('test_input.npy')))"]
    lines += ["```", "", "## Validation", "",
              f"Each file was loaded back when it was written and run on test_input.npy "
              f"({description['test']['input_source']}); its outputs matched the "
              "trained run's (test_probabilities.npy, test_mask.npy). export.json gives the figures and the sha256 "
              "of the network and test files; rdf.yaml describes the model for bioimage.io tools.", ""]
    return "\n".join(lines)


BIOIMAGEIO_UNITS = {"nm": "nanometer", "um": "micrometer", "mm": "millimeter", "m": "meter"}


def _space_scale(metres: float) -> dict[str, Any]:
    """A bioimage.io space axis's unit and scale (its pixel size) for a length in metres, in the unit the
    package's README says it in."""
    unit, size = length_unit(metres)
    return {"unit": BIOIMAGEIO_UNITS[unit], "scale": float(f"{metres / size:.6g}")}


def bioimageio_description(description: dict[str, Any], card: ModelCard) -> dict[str, Any]:
    """export.json restated as a bioimage.io model description (format 0.5): tensors, axes, test tensors, weights."""
    size = description["input"]["size"]
    margin_offset = -2 * size.get("margin", 0)

    pixel = description["input"].get("pixel_size_m")  # exports before 2026-12-04 have none

    def space(axis: str, tensor: str | None) -> dict[str, Any]:
        scale = {} if not pixel else _space_scale(pixel[0 if axis == "y" else 1])
        if tensor is None:
            return {"type": "space", "id": axis, "size": {"min": size["minimum"], "step": size["step"]}, **scale}
        return {"type": "space", "id": axis, "size": {"tensor_id": "image", "axis_id": axis, "offset": margin_offset},
                **scale}

    classes = description["outputs"][0]["classes"]
    names = description["outputs"][0].get("class_names") or [f"class_{v}" for v in classes]  # exports before 2026-12-04
    channels = description["input"]["channels"]
    test = description["test"]
    weights: dict[str, Any] = {}
    files = description["files"]
    if TORCHSCRIPT_FILE in files:
        weights["torchscript"] = {"source": TORCHSCRIPT_FILE, "sha256": files[TORCHSCRIPT_FILE]["sha256"],
                                  "pytorch_version": description["libraries"]["torch"].split("+")[0]}
    if ONNX_FILE in files:  # converted from the same network; bioimage.io wants one entry without a parent
        weights["onnx"] = {"source": ONNX_FILE, "sha256": files[ONNX_FILE]["sha256"], "opset_version": ONNX_OPSET,
                           **({"parent": "torchscript"} if "torchscript" in weights else {})}
    return {
        "format_version": BIOIMAGEIO_FORMAT,
        "type": "model",
        "name": card.name,
        "description": f"{description['model']['name']} segmentation network trained and exported with unetkit; "
                       f"classes {', '.join(names)} (the training labels' values)",
        "authors": [{"name": card.author}],
        "cite": [UNET_PAPER],
        "license": card.license,
        "documentation": "README.md",
        "tags": ["segmentation", "unet", "unetkit", "2d"],
        "timestamp": description["created"],
        "inputs": [{
            "id": "image",
            "description": description["input"]["values"],
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": [f"c{i}" for i in range(channels)]},
                     space("y", None), space("x", None)],
            "test_tensor": {"source": test["input"]},
            "data": {"type": "float32"},
        }],
        "outputs": [
            {"id": "probabilities", "description": f"class probabilities, classes in the order {', '.join(names)}",
             "axes": [{"type": "batch"}, {"type": "channel", "channel_names": names},
                      space("y", "image"), space("x", "image")],
             "test_tensor": {"source": test["probabilities"]}, "data": {"type": "float32"}},
            {"id": "mask", "description": ("the class of highest probability: its colour packed as 0xRRGGBB"
                                           if description["outputs"][1]["colour"]
                                           else "the class of highest probability, as its value in the training labels"),
             "axes": [{"type": "batch"}, space("y", "image"), space("x", "image")],
             "test_tensor": {"source": test["mask"]}, "data": {"type": description["outputs"][1]["dtype"]}},
        ],
        "weights": weights,
    }


from unetkit.api import make_module_callable  # noqa: E402 (after the module's own names)

make_module_callable(__name__, "export")  # `unetkit.export(...)` is the API function (api.py)
