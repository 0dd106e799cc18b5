"""Models by name: flags pick a builder, builders assemble the parts.

`build_model(name, **options)` returns the network; `model_config(name, **options)`
the frozen dataclass that describes it (saved as JSON in the run, so a run can
rebuild its model without any code from the user).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

from torch import nn

from unetkit.errors import InputError
from unetkit.models.diffusion_unet import DiffusionUNet, DiffusionUNetConfig
from unetkit.models.fcn import FCN, FCN8sConfig, FCN16sConfig, FCN32sConfig
from unetkit.models.unet import UNet, UNetConfig
from unetkit.models.unet_valid import UNetClassic, UNetClassicConfig

_REGISTRY: dict[str, tuple[type, Callable[[Any], nn.Module]]] = {
    "unet": (UNetConfig, UNet),
    "unet-classic": (UNetClassicConfig, UNetClassic),
    "fcn32s": (FCN32sConfig, FCN),
    "fcn16s": (FCN16sConfig, FCN),
    "fcn8s": (FCN8sConfig, FCN),
    "diffusion-unet": (DiffusionUNetConfig, DiffusionUNet),  # a denoiser, trained by `unetkit diffusion train`
}


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def check_model_name(name: str, segmenters_only: bool = False) -> None:
    """An unknown --model is an error naming the known ones (train checks it before reading any data;
    `segmenters_only`: its list leaves out the diffusion denoiser, which it refuses)."""
    if name not in _REGISTRY:
        known = [m for m in available_models() if not (segmenters_only and m == "diffusion-unet")]
        raise InputError(f"--model {name}: unknown model; choose one of {', '.join(known)}")


def model_config(name: str, **options: Any) -> Any:
    """The config dataclass of model `name` with `options`; unknown names and options are clear errors."""
    check_model_name(name)
    config_type, _ = _REGISTRY[name]
    try:
        return config_type(**options)
    except TypeError as exc:
        raise InputError(f"--model {name}: {exc}") from None


def build_model(name: str, **options: Any) -> nn.Module:
    """Build a network by name, e.g. build_model("unet", in_channels=1, num_classes=2, base_width=32)."""
    config = model_config(name, **options)
    return _REGISTRY[name][1](config)


def config_to_json(config: Any) -> dict:
    return asdict(config)
