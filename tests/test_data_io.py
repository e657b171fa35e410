"""Image/mask reading and writing: formats, EXIF, thresholds, size bounds and clear errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from segr1.data import io
from segr1.data.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    is_image_file,
    read_image,
    read_mask,
    write_image,
    write_mask_png,
)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)


def test_read_image_png_round_trip(tmp_path, rgb):
    path = write_image(rgb, tmp_path / "sub" / "a.png")
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    assert np.array_equal(out, rgb)


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "1", "I;16", "CMYK"])
def test_read_image_any_mode_gives_hw3_uint8(tmp_path, mode):
    im = Image.fromarray(np.full((10, 12, 3), 200, np.uint8)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        im = Image.fromarray(np.full((10, 12), 200 * 257, np.uint16))
    path = tmp_path / ("a.tif" if mode in ("I;16", "CMYK") else "a.png")
    im.save(path)
    out = read_image(path)
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    if mode in ("L", "I;16", "LA", "RGBA"):
        assert np.all(np.abs(out.astype(int) - 200) <= 1)


def test_read_image_applies_exif_orientation(tmp_path):
    arr = np.zeros((20, 50, 3), np.uint8)
    arr[:, :10] = 255  # white band on the left
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif, quality=95)
    out = read_image(path)
    assert out.shape == (50, 20, 3)
    assert out[:10].mean() > 200 and out[-10:].mean() < 50  # the band is now on top


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError):
        read_mask(tmp_path / "nope.png")


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
    ids=["empty", "text", "bad-png"],
)
def test_corrupt_files_raise_image_read_error_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(path)
    with pytest.raises(OSError):  # one `except OSError` catches missing and corrupt files
        read_mask(path)


def test_truncated_png_raises(tmp_path, rgb):
    path = write_image(np.tile(rgb, (10, 10, 1)), tmp_path / "t.png")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="t.png"):
        read_image(path)


def test_pixel_bound_per_call_and_module_wide(tmp_path, rgb, monkeypatch):
    path = write_image(rgb, tmp_path / "a.png")  # 1200 pixels
    with pytest.raises(ImageReadError, match="over the limit"):
        read_image(path, max_pixels=1000)
    assert read_image(path, max_pixels=1200).shape == (30, 40, 3)
    monkeypatch.setattr(io, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageReadError, match="MAX_IMAGE_PIXELS"):
        read_mask(path)
    assert read_image(path, max_pixels=0).shape == (30, 40, 3)  # 0 disables the bound


def test_read_mask_threshold_is_strictly_above_128(tmp_path):
    values = np.array([[0, 1, 127, 128], [129, 200, 254, 255]], np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png")
    assert m.dtype == bool
    assert m.tolist() == [[False, False, False, False], [True, True, True, True]]
    assert read_mask(tmp_path / "m.png", threshold=0).sum() == 7


def test_read_mask_uses_the_first_channel_of_colour_files(tmp_path):
    arr = np.zeros((2, 3, 3), np.uint8)
    arr[0, 0] = (255, 0, 0)  # red: first channel 255 -> foreground
    arr[0, 1] = (0, 255, 0)  # green: first channel 0 -> background
    arr[0, 2] = (255, 255, 255)
    Image.fromarray(arr).save(tmp_path / "rgb.png")
    assert read_mask(tmp_path / "rgb.png").tolist() == [[True, False, True], [False, False, False]]
    Image.fromarray(arr).convert("RGBA").save(tmp_path / "rgba.png")
    assert read_mask(tmp_path / "rgba.png")[0].tolist() == [True, False, True]


def test_read_mask_bilevel_and_16_bit_files(tmp_path):
    arr = np.zeros((4, 4), bool)
    arr[1:3, 1:3] = True
    Image.fromarray(arr).save(tmp_path / "b.png")  # mode "1"
    assert np.array_equal(read_mask(tmp_path / "b.png"), arr)
    Image.fromarray(arr.astype(np.uint16) * 65535).save(tmp_path / "w.png")  # 16-bit grey
    assert np.array_equal(read_mask(tmp_path / "w.png"), arr)


def test_read_mask_warns_about_0_1_label_maps(tmp_path, caplog):
    Image.fromarray(np.eye(4, dtype=np.uint8)).save(tmp_path / "01.png")
    with caplog.at_level(logging.WARNING, logger="segr1.data.io"):
        m = read_mask(tmp_path / "01.png")
    assert not m.any()
    assert "0/1" in caplog.text


def test_read_mask_jpeg_ground_truth(tmp_path):
    arr = np.zeros((32, 32), np.uint8)
    arr[8:24, 8:24] = 255
    Image.fromarray(arr).save(tmp_path / "gt.jpg", quality=90)
    m = read_mask(tmp_path / "gt.jpg")
    assert abs(int(m.sum()) - 256) <= 16  # JPEG ringing stays on the right side of 128 almost everywhere


def test_write_mask_png_writes_0_255_single_channel(tmp_path):
    mask = np.zeros((5, 7), bool)
    mask[1:4, 2:5] = True
    path = write_mask_png(mask, tmp_path / "deep" / "m.png")
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (7, 5)
        assert set(np.unique(np.asarray(im)).tolist()) == {0, 255}
    assert np.array_equal(read_mask(path), mask)
    assert [p.name for p in path.parent.iterdir()] == ["m.png"]  # no temporary file left


def test_write_mask_png_rejects_non_bool_and_wrong_shapes(tmp_path):
    with pytest.raises(TypeError, match="bool"):
        write_mask_png(np.zeros((3, 3), np.uint8), tmp_path / "m.png")
    with pytest.raises(ValueError, match="shape"):
        write_mask_png(np.zeros((3, 3, 1), bool), tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()


def test_write_image_validates_input_and_extension(tmp_path, rgb):
    with pytest.raises(ValueError, match="uint8"):
        write_image(rgb.astype(np.float32), tmp_path / "a.png")
    with pytest.raises(ValueError, match="extension"):
        write_image(rgb, tmp_path / "a.nope")
    jpg = read_image(write_image(rgb, tmp_path / "a.jpg"))
    assert jpg.shape == rgb.shape


def test_is_image_file_and_extensions():
    assert ".png" in IMAGE_EXTENSIONS and ".jpg" in IMAGE_EXTENSIONS
    assert is_image_file("a/B.JPG") and is_image_file("x.Png") and is_image_file("y.tiff")
    assert not is_image_file("notes.txt") and not is_image_file(".hidden.png") and not is_image_file("noext")
