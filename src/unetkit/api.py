"""The Python API: what the command line does, as plain calls with keyword options.

    import unetkit
    unetkit.train("data/image", "data/label", "runs/a", budget="5m")            # planned, as `unetkit train`
    unetkit.predict("runs/a", "new/", "pred/", tta=True)                         # a file, a folder or a list
    scores = unetkit.evaluate("pred/", "truth/")                                 # the JSON `evaluate --json` writes
    run = unetkit.load_run("runs/a")                                             # network, classes, normalisation
    mask = unetkit.predict_array(run, image)                                     # an image in memory -> its mask
    report = unetkit.check("data/image", "data/label"); report.errors            # `unetkit check`, as findings
    unetkit.resume("runs/a", budget="15m"); unetkit.export("runs/a", "model.zip")  # --resume; export

`unetkit.train`, `unetkit.predict` and `unetkit.evaluate` are also the names of
the package and modules that do the work (`unetkit.train.planning`, ...); those
modules are callable and forward here, so either spelling calls these functions.
Errors in use raise `unetkit.errors.InputError` with the one line the CLI prints. A call leaves the
calling program's torch thread count and random state as they were (a run sets its own for its duration;
building a network draws from the generator, so load_run, check(run=) and export are kept too).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import time
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

import unetkit  # the annotations name unetkit.run.Run: resolved (torch imported) only when asked for
from unetkit.config import TrainConfig, parse_duration
from unetkit.errors import InputError

WARNING_PREFIX = "warning: "

if TYPE_CHECKING:
    import unetkit.data.validate
    import unetkit.run

PathLike = str | os.PathLike
Function = TypeVar("Function", bound=Callable[..., Any])


def keeps_host_settings(function: Function) -> Function:
    """Run `function` with the caller's torch thread count and random state put back afterwards: a run seeds
    torch's global generator and sets one thread per core, which a notebook or a larger program must not
    inherit (its own seeded stream would repeat, its thread limit would be lost)."""
    @functools.wraps(function)
    def kept(*args: Any, **kwargs: Any) -> Any:
        import torch

        threads, state = torch.get_num_threads(), torch.get_rng_state()
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        try:
            return function(*args, **kwargs)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            torch.set_rng_state(state)
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)

    return kept  # type: ignore[return-value]


def checks_arguments(function: Function) -> Function:
    """Refuse a call whose arguments do not fit `function` (an unknown keyword, a missing path) with an InputError
    naming the function and its options, as any error in use is raised, not Python's TypeError."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            options = [name for name, parameter in signature.parameters.items()
                       if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
            raise InputError(f"unetkit.{function.__name__}: {exc}; its options are {', '.join(options)} "
                             f"(help(unetkit.{function.__name__}))") from None
        return function(*args, **kwargs)

    return checked  # type: ignore[return-value]


def takes_numpy_numbers(function: Function) -> Function:
    """Call `function` with numpy numbers among its arguments as Python ones (plain_number)."""
    @functools.wraps(function)
    def plain(*args: Any, **kwargs: Any) -> Any:
        return function(*map(plain_number, args), **{name: plain_number(value) for name, value in kwargs.items()})

    return plain  # type: ignore[return-value]


def plain_number(value: Any) -> Any:
    """A numpy scalar (np.int64 from np.arange or a mask's max, np.float32) as the Python number it holds, also
    inside a tuple or list: a notebook's values are these, and `base_width=np.int64(4)` was refused as "not a
    whole number". Everything else is returned as it is."""
    import numpy as np

    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):  # np.array(1) too
        return value.item()
    if isinstance(value, (tuple, list)):
        return type(value)(plain_number(item) for item in value)
    return value


def training_config(recipe_name: str, options: dict[str, Any], epochs: int | None, budget_s: float | None,
                    plan: bool = True) -> tuple[TrainConfig, frozenset[str]]:
    """The recipe with the given options (None: not given), and the names given (the planner keeps them).
    `epochs`/`budget_s`: what is given alone decides when to stop; neither keeps the recipe's budget."""
    from unetkit.train.recipes import recipe

    config = recipe(recipe_name).with_overrides(**options)
    if not plan:
        config = replace(config, plan=False)
    if epochs is not None or budget_s is not None:
        config = replace(config, epochs=epochs, budget_s=budget_s)
    return config, frozenset(name for name, value in options.items() if value is not None)


TRAIN_OPTIONS = frozenset(f.name for f in fields(TrainConfig)) - {"recipe", "epochs", "budget_s", "plan"}
TRAIN_KEYWORDS = frozenset({"budget", "epochs", "recipe", "val_images", "val_labels", "start_from", "plan", "progress"})


def as_path(value: Any, name: str) -> Path:
    """A path argument, or one line saying what was given instead (pathlib's TypeError names no argument)."""
    if not isinstance(value, (str, os.PathLike)):
        shape = getattr(value, "shape", None)  # an array's values would fill the screen: its type and shape say it
        given = f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else repr(value)[:80]
        raise InputError(f"{name}={given}: give a path (a str or pathlib.Path)")
    if not os.fspath(value):
        raise InputError(f"{name}='': an empty path; give a file or folder")
    from unetkit.data.io import without_missing_dots

    return without_missing_dots(Path(value))


def label_value(value: Any) -> Any:
    """A mask value as the CLI reads it: a number, "R,G,B" or an (R, G, B) tuple -> the packed code colour masks
    use; anything else is returned for TrainConfig to refuse."""
    from unetkit.data.labels import parse_label_value

    text = ",".join(str(part) for part in value) if isinstance(value, (tuple, list)) else value
    if isinstance(text, str):
        try:
            return parse_label_value(text)
        except ValueError:
            pass
    return value


def mask_value(value: Any, name: str) -> int:
    """A mask value argument (label_value), or one line saying what was given instead."""
    code = label_value(value)
    if isinstance(code, bool) or not isinstance(code, int):
        raise InputError(f"{name}={value!r}: give a mask value (a whole number, or R,G,B for colour masks)")
    return code


@checks_arguments
@takes_numpy_numbers
@keeps_host_settings
def train(images: PathLike, labels: PathLike, out: PathLike, *, budget: str | float | None = None,
          epochs: int | None = None, recipe: str = "default", val_images: PathLike | None = None,
          val_labels: PathLike | None = None, start_from: PathLike | None = None, plan: bool = True,
          progress: bool = True, **options: Any) -> dict[str, Any]:
    """Train a run into the new folder `out`, as `unetkit train` does; returns its run.json record.

    `budget`: "10m", "90s" or seconds; `options`: TrainConfig fields (base_width, depth, patch_size, batch_size,
    lr, loss, model, augment, seed, device, ...): each one given is kept and the rest planned around it."""
    from unetkit.train.start import train as train_run

    unknown = sorted(set(options) - TRAIN_OPTIONS)
    if unknown:
        named = ", ".join(sorted(TRAIN_OPTIONS | TRAIN_KEYWORDS))
        raise InputError(f"unetkit.train: unknown option {', '.join(unknown)}; choose from {named} (progress=False "
                         "is --quiet; unetkit.resume continues a run)")
    budget_s = parse_duration(budget) if isinstance(budget, str) else budget
    if options.get("ignore_value") is not None:
        options["ignore_value"] = label_value(options["ignore_value"])
    if isinstance(options.get("synthetic"), os.PathLike):  # a diffusion run's folder, kept as text in run.json
        options["synthetic"] = str(options["synthetic"])
    config, fixed = training_config(recipe, options, epochs, budget_s, plan)
    return train_run(as_path(images, "images"), as_path(labels, "labels"), as_path(out, "out"), config,
                     as_path(val_images, "val_images") if val_images else None,
                     as_path(val_labels, "val_labels") if val_labels else None,
                     progress=progress, fixed=fixed, start_from=as_path(start_from, "start_from") if start_from else None,
                     began=time.monotonic())


@checks_arguments
@takes_numpy_numbers
@keeps_host_settings
def predict(run: "PathLike | unetkit.run.Run", inputs: PathLike | Iterable[PathLike], out: PathLike, *, tta: bool = False,
            prob: bool = False, instances: str | None = None, boundary_value: int = 0, device: str = "auto",
            tile: int | None = None, precision: str | None = None, progress: bool = True,
            skip_done: bool = False, match_pixel_size: bool = False, pixel_size: str | None = None,
            training_pixel_size: str | None = None) -> list[Path]:
    """Predict a file, a folder or a TIFF stack (or a list of them) into `out`, as `unetkit predict` does;
    returns the inputs' mask files. `instances`: "auto", "cells" or "objects" (--instances); `skip_done`: leave
    the inputs this run already predicted into `out` with these options (--skip-done); `match_pixel_size`,
    `pixel_size` ("8nm") and `training_pixel_size` ("4nm"): --match-pixel-size, --pixel-size and
    --training-pixel-size."""
    from unetkit.predict_files import predict_paths
    from unetkit.run import Run

    if instances is not None and instances not in ("auto", "cells", "objects"):
        raise InputError(f"instances={instances!r}: choose auto, cells or objects")
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int)):
        raise InputError(f"tile={tile!r}: give the window size in pixels as a whole number, or None")
    if isinstance(inputs, (str, os.PathLike)):
        paths = [Path(inputs)]
    elif isinstance(inputs, Iterable) and not hasattr(inputs, "shape"):  # a list, tuple or generator of paths
        paths = [as_path(p, "inputs") for p in inputs]
        if not paths:
            raise InputError("inputs=[]: no images given; give a file or folder path, or a list of them")
    else:
        raise InputError(f"inputs={type(inputs).__name__}: give a file or folder path, or a list of them (an image "
                         "held in memory: unetkit.predict_array(run, image))")
    return predict_paths(run if isinstance(run, Run) else as_path(run, "run"), paths, as_path(out, "out"), tta=tta,
                         write_probabilities=prob, device=device, tile=tile, progress=progress, precision=precision,
                         instances=mask_value(boundary_value, "boundary_value") if instances else None,
                         instance_kind=instances or "auto", say=functools.partial(_say, progress=progress),
                         skip_done=skip_done, match_pixel_size=match_pixel_size, pixel_size=pixel_size,
                         training_pixel_size=training_pixel_size)


def _say(line: str, progress: bool) -> None:
    """A line the command would print, for Python: a warning (an image unlike the training images, its mask
    suspect) as a Python warning, which a notebook shows and a program can catch or turn into an error, where
    printed it was lost in redirected output; the rest printed unless `progress` is False."""
    if line.startswith(WARNING_PREFIX):
        warnings.warn(line[len(WARNING_PREFIX):], UserWarning, stacklevel=_caller_level())
    elif progress:
        print(line)


def _caller_level() -> int:
    """The stacklevel of the first frame outside unetkit, for warnings.warn called by the caller of this: the
    warning then names the user's line, which a filter can target, not a line of unetkit's wrappers."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


@checks_arguments
@takes_numpy_numbers
@keeps_host_settings
def predict_array(run: "PathLike | unetkit.run.Run", image: Any, *, tta: bool = False, prob: bool = False, device: str | None = None,
                  tile: int | None = None, precision: str | None = None, pixel_size: str | None = None,
                  match_pixel_size: bool = False, training_pixel_size: str | None = None) -> Any:
    """Predict one image held in memory, a (height, width) or (height, width, channels) array as a file of it
    reads, and return its mask as an array in the masks' own values (what `predict` would write); with `prob`,
    return (mask, probabilities), the probabilities a (classes, height, width) float32 array. `run`: a folder or
    a Run from load_run (load it once to predict many arrays; it computes on its own device unless `device`
    says otherwise; a folder: "auto"). An image unlike the training images warns. `pixel_size` ("8nm"): the
    array's pixel size, which it cannot declare; with `match_pixel_size` it is predicted resampled to the
    training images' pixels (`training_pixel_size`, "4nm", where run.json has none), as predict does."""
    from unetkit.predict_files import predict_array as predict_one
    from unetkit.run import Run

    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int)):
        raise InputError(f"tile={tile!r}: give the window size in pixels as a whole number, or None")
    if isinstance(image, (str, os.PathLike)):
        raise InputError(f"image={image!r}: a path; unetkit.predict(run, path, out) predicts files, predict_array arrays")
    return predict_one(run if isinstance(run, Run) else as_path(run, "run"), image, tta=tta, probabilities=prob,
                       device=device, tile=tile, precision=precision, warn=functools.partial(_say, progress=False),
                       pixel_size=pixel_size, match_pixel_size=match_pixel_size,
                       training_pixel_size=training_pixel_size)


@checks_arguments
@takes_numpy_numbers
def evaluate(pred: PathLike, labels: PathLike, *, instances: str | None = None, boundary_value: int | None = None,
             ignore_value: int | None = None, objects: bool = False) -> dict[str, Any]:
    """Score predicted masks (or, with `instances` "threshold" or "watershed", the NAME_prob.tif maps; with
    `objects`, the NAME_cells.tif objects against true instance masks) against true masks, as `unetkit evaluate`
    does; returns what --json writes."""
    from unetkit.evaluate import evaluate_objects, evaluate_paths, evaluate_probabilities, refuse_options_beside_objects

    if objects:
        refuse_options_beside_objects({"instances": instances, "boundary_value": boundary_value,
                                       "ignore_value": ignore_value})
        return evaluate_objects(as_path(pred, "pred"), as_path(labels, "labels"))

    boundary = 0 if boundary_value is None else mask_value(boundary_value, "boundary_value")
    ignore = None if ignore_value is None else mask_value(ignore_value, "ignore_value")
    if instances is not None:
        return evaluate_probabilities(as_path(pred, "pred"), as_path(labels, "labels"), instances, boundary, ignore)
    return evaluate_paths(as_path(pred, "pred"), as_path(labels, "labels"), boundary, boundary_required=boundary_value is not None,
                          ignore_value=ignore)


@checks_arguments
@takes_numpy_numbers
@keeps_host_settings
def resume(run: PathLike, *, epochs: int | None = None, budget: str | float | None = None, device: str | None = None,
           precision: str | None = None, progress: bool = True, **others: Any) -> dict[str, Any]:
    """Continue an interrupted run (or extend a finished one by `epochs` or a new total `budget`), as
    `unetkit train --resume` does; returns its run.json record."""
    from unetkit.train.start import resume as resume_run

    if others:  # as train refuses them: one line, not a TypeError
        raise InputError(f"unetkit.resume: unknown option {', '.join(sorted(others))}; a resumed run keeps its own "
                         "options (choose from epochs, budget, device, precision, progress; to change them, train a "
                         "new run with start_from=RUN)")

    budget_s = parse_duration(budget) if isinstance(budget, str) else budget
    return resume_run(as_path(run, "run"), epochs=epochs, budget_s=budget_s, progress=progress, device=device,
                      precision=precision, began=time.monotonic())


@checks_arguments
@takes_numpy_numbers
@keeps_host_settings
def check(images: PathLike, labels: PathLike, *, run: PathLike | None = None, val_fraction: float | None = None,
          ignore_value: Any = None) -> "unetkit.data.validate.CheckReport":
    """Pair, read and inspect every image and mask, as `unetkit check` does, and return the report (its `errors`
    and `warnings` are lists of findings; `unetkit.data.validate.format_report` prints it as the command does).
    `run`: also check the pairs against a trained run's classes and channels (before `train --from RUN`);
    `val_fraction`: the share `train` would hold out (default 0.2; 0 for none); `ignore_value`: as for `train`."""
    from unetkit.data.dataset import check_val_fraction
    from unetkit.data.validate import check_dataset
    from unetkit.run import load_run as load

    if val_fraction is not None and (isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float))):
        raise InputError(f"val_fraction={val_fraction!r}: give the share held out for validation as a number (0.2)")
    if val_fraction:  # 0: none held out (check only)
        check_val_fraction(val_fraction)
    trained = load(as_path(run, "run")) if run is not None else None  # read for its classes and channels only
    ignore = mask_value(ignore_value, "ignore_value") if ignore_value is not None else (trained.encoding.ignore_value if trained else None)
    return check_dataset(as_path(images, "images"), as_path(labels, "labels"), trained.encoding if trained else None,
                         trained.model_options["in_channels"] if trained else None,
                         trained.normalization.source_dtype if trained else None,
                         val_fraction=TrainConfig.val_fraction if val_fraction is None else val_fraction or None,
                         ignore_value=ignore, run_pixel_size=trained.record.get("pixel_size") if trained else None,
                         run=as_path(run, "run") if trained else None,
                         mask_kind=trained.config.mask_kind if trained else "classes")


@checks_arguments
@takes_numpy_numbers
@keeps_host_settings
def export(run: PathLike, out: PathLike, *, formats: Iterable[str] = ("onnx", "torchscript"), name: str | None = None,
           author: str | None = None, license: str = "CC-BY-4.0") -> dict[str, Any]:
    """Write the run's network as ONNX and/or TorchScript with a bioimage.io rdf.yaml into the new folder (or
    FILE.zip) `out`, as `unetkit export` does; returns export.json's content."""
    from unetkit.export import ModelCard, export_run

    chosen = (formats,) if isinstance(formats, str) else tuple(formats)  # "onnx" is one format, not four letters
    return export_run(as_path(run, "run"), as_path(out, "out"), chosen, ModelCard(name, author, license))


@checks_arguments
@takes_numpy_numbers
@keeps_host_settings
def load_run(path: PathLike, *, device: str = "cpu", precision: str | None = None) -> "unetkit.run.Run":
    """A trained run: its network (with weights), classes, normalisation and config, on `device` ("cpu", "cuda",
    "auto"), computing in the run's precision unless `precision` (auto, fp32, bf16, fp16) says otherwise."""
    from unetkit.devices import resolve_device
    from unetkit.run import load_run as load

    return load(as_path(path, "path"), resolve_device(device), precision)


def make_module_callable(module_name: str, function: str) -> None:
    """Let the module `module_name` be called as the API function `function`: `import unetkit.train.start`
    makes `unetkit.train` the package, and `unetkit.train(...)` must still train."""
    import sys
    import types

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return globals()[function](*args, **kwargs)

    module = sys.modules[module_name]
    module.__class__ = CallableModule
    api_function = globals()[function]
    # the annotations as types, not as the strings `from __future__ import annotations` leaves
    module.__signature__ = inspect.signature(api_function, eval_str=True)  # type: ignore[attr-defined]  # keyword completion and help in notebooks
    call = f"unetkit.{function}{module.__signature__}"
    module.__doc__ = f"Called as {call}:\n{inspect.getdoc(api_function)}\n\n{inspect.getdoc(module) or ''}".rstrip()
