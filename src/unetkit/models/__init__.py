"""Networks, built by name: `build_model("unet", in_channels=1, num_classes=2)`."""

from unetkit.models.registry import available_models, build_model

__all__ = ["available_models", "build_model"]
