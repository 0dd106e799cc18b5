"""Sliding-window prediction: windows cover the image, blending is exact for an identity model, TTA undoes itself."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unetkit.models import build_model
from unetkit.predict import gaussian_window, predict_probabilities, tile_starts


class TwoClassIdentity(torch.nn.Module):
    """Logits whose softmax gives back the (0..1) input as the class-1 probability: an oracle for tiling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x[:, :1].clamp(1e-6, 1 - 1e-6)
        return torch.cat([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 3000), tile=st.integers(1, 600), overlap=st.floats(0.0, 0.9))
def test_windows_cover_every_pixel_and_stay_inside(length: int, tile: int, overlap: float) -> None:
    tile = min(tile, length)
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(0 <= s <= length - tile for s in starts)
    assert all(b - a <= tile for a, b in zip(starts, starts[1:]))  # no gaps between windows


@pytest.mark.parametrize("shape", [(1, 50, 70), (1, 130, 97), (1, 300, 300)])
@pytest.mark.parametrize("tta", [False, True])
def test_identity_model_gives_its_input_back_through_tiling(shape: tuple[int, int, int], tta: bool) -> None:
    image = torch.rand(shape)
    probs = predict_probabilities(TwoClassIdentity(), image, tile=64, overlap=0.3, tta=tta)
    assert probs.shape == (2, *shape[1:])
    assert torch.allclose(probs[1], image[0].clamp(1e-6, 1 - 1e-6), atol=1e-5)
    assert torch.allclose(probs.sum(0), torch.ones(shape[1:]), atol=1e-5)


def test_tiled_prediction_agrees_with_a_whole_image_pass() -> None:
    torch.manual_seed(0)
    model = build_model("unet", base_width=4, depth=2).eval()
    image = torch.rand(1, 120, 90)
    whole = predict_probabilities(model, image, tile=512)
    tiled = predict_probabilities(model, image, tile=48, overlap=0.5)
    agreement = (whole.argmax(0) == tiled.argmax(0)).float().mean()
    assert agreement > 0.95  # an untrained net's borders differ a little; a trained one agrees more (issue 3)


def test_gaussian_window_peaks_in_the_centre_and_is_positive() -> None:
    window = gaussian_window(9, 12)
    assert window.shape == (9, 12)
    assert window.min() > 0
    assert window[4, 5:7].max() == window.max()
    assert window[0, 0] < window[4, 6]
