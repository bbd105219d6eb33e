"""Pictures for people are upright (EXIF orientation applied for display); data stays as stored."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from exifclip.cli import main
from exifclip.report.thumbnails import ORIENTATIONS
from exifclip.viz import upright_view


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_view_turns_as_pillow_does(orientation):
    a = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    transpose = ORIENTATIONS.get(orientation)
    expected = np.asarray(Image.fromarray(a).transpose(transpose)) if transpose is not None else a
    np.testing.assert_array_equal(upright_view(a, orientation), expected)


def test_upright_view_leaves_unknown_codes_as_stored():
    a = np.zeros((2, 3))
    assert upright_view(a, 0) is a and upright_view(a, 9) is a


def test_cli_overlay_and_heatmap_are_upright_and_the_mask_is_as_stored(tiny_model_dir, tmp_path, rng):
    pixels = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # shown portrait: turned 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    out = tmp_path / "out"
    assert main(["localize", str(tmp_path / "turned.jpg"), "--out", str(out), "--model", str(tiny_model_dir),
                 "--device", "cpu", "--stride", "16", "--max-side", "0"]) == 0
    record = json.loads((out / "turned.json").read_text())
    assert record["display_orientation"] == 6
    with Image.open(out / "turned_overlay.png") as overlay, Image.open(out / "turned_heatmap.png") as heatmap:
        assert overlay.size == heatmap.size == (96, 160)  # width, height: portrait
        heat = np.asarray(heatmap)
    with Image.open(out / "turned_mask.png") as mask:
        assert mask.size == (160, 96)  # the analysed pixels, as stored
    # The upright heatmap picture is the stored one turned: the API's heatmap of the same pixels, written as stored.
    from exifclip import SpliceLocalizer
    from exifclip.viz import save_heatmap

    result = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", stride=16).fit().localize(
        [str(tmp_path / "turned.jpg")])[0]
    with Image.open(save_heatmap(tmp_path / "stored.png", result.heatmap)) as stored:
        np.testing.assert_array_equal(heat, upright_view(np.asarray(stored), 6))
