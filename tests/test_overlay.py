"""draw_overlay: mask tint + contour, boxes, labelled points, in the image frame."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from segr1.overlay import BOX_COLOR, NEGATIVE_COLOR, POSITIVE_COLOR, draw_overlay


def prompt(boxes=(), points=(), labels=()):
    """A SegPrompt look-alike (draw_overlay only reads boxes, points, labels)."""
    return SimpleNamespace(
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        points=np.asarray(points, dtype=np.float64).reshape(-1, 2),
        labels=np.asarray(labels, dtype=np.int64).reshape(-1),
    )


def test_shape_dtype_and_inputs_untouched():
    image = np.full((40, 70, 3), 100, dtype=np.uint8)
    mask = np.zeros((40, 70), dtype=bool)
    mask[10:30, 20:50] = True
    before = image.copy()
    out = draw_overlay(image, mask, prompt())
    assert out.shape == (40, 70, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(image, before)
    assert not np.array_equal(out[20, 35], image[20, 35])  # tinted inside
    np.testing.assert_array_equal(out[0, 0], image[0, 0])  # untouched far outside


def test_empty_mask_and_no_prompt_is_a_copy():
    image = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    out = draw_overlay(image, np.zeros((17, 23), bool), None)
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_boxes_and_points_are_drawn_at_their_image_frame_positions():
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    mask = np.zeros((200, 300), dtype=bool)
    out = draw_overlay(image, mask, prompt([[50, 40, 250, 160]], [[100, 100], [200, 100]], [1, 0]))
    assert tuple(out[40, 150]) == BOX_COLOR  # top edge of the box
    assert tuple(out[100, 50]) == BOX_COLOR  # left edge
    assert tuple(out[100, 100]) == POSITIVE_COLOR
    assert tuple(out[100, 200]) == NEGATIVE_COLOR
    assert not out[5, 5].any()


def test_out_of_range_and_nan_coordinates_do_not_crash():
    image = np.zeros((30, 30, 3), dtype=np.uint8)
    p = prompt([[-1e9, np.nan, 1e12, 40]], [[np.inf, -5]], [1])
    out = draw_overlay(image, np.ones((30, 30), bool), p)
    assert out.shape == (30, 30, 3)


@pytest.mark.parametrize(
    ("image", "mask"),
    [
        (np.zeros((10, 10), np.uint8), np.zeros((10, 10), bool)),
        (np.zeros((10, 10, 3), np.float32), np.zeros((10, 10), bool)),
        (np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11), bool)),
    ],
)
def test_bad_inputs_raise_value_error(image, mask):
    with pytest.raises(ValueError):
        draw_overlay(image, mask)
