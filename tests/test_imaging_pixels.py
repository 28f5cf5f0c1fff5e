"""Zero-copy pixel views (Pillow's Arrow export) must equal np.asarray in every case, and outlive the image."""

from __future__ import annotations

import gc

import imaging_samples as S
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ai_service.imaging.pixels import _arrow_view, pixel_array, pixel_view, pixel_view4

MODES = ["L", "LA", "RGB", "RGBA", "P", "1", "I", "I;16", "F", "CMYK", "YCbCr"]


@settings(max_examples=40, deadline=None)
@given(mode=st.sampled_from(MODES), w=st.integers(1, 40), h=st.integers(1, 40), seed=st.integers(0, 99))
def test_view_equals_asarray(mode: str, w: int, h: int, seed: int) -> None:
    im = Image.fromarray(S.random_rgba(h, w, seed)).convert(mode)
    ref = np.asarray(im)
    view = pixel_view(im)
    assert view.shape == ref.shape and view.dtype == ref.dtype and np.array_equal(view, ref)
    assert not view.flags.writeable
    copy = pixel_array(im)
    assert np.array_equal(copy, ref) and copy.flags.writeable and copy.flags.c_contiguous


def test_views_are_zero_copy_for_common_modes() -> None:
    for mode in ("L", "RGB", "RGBA"):
        im = Image.fromarray(S.random_rgba(16, 16)).convert(mode)
        assert _arrow_view(im) is not None, mode
    four = pixel_view4(Image.fromarray(S.random_rgb()).copy())
    assert four is not None and four.shape[2] == 4 and (four[..., 3] == 255).all()
    assert pixel_view4(Image.new("L", (2, 2))) is None


def test_images_over_outside_memory_are_read_safely() -> None:
    """`Image.fromarray` wraps the array (im.readonly); Pillow 12 crashed exporting those, so they fall back there."""
    images = [
        Image.fromarray(array) for array in (S.random_rgba(24, 32), S.random_rgb(), S.random_rgba(24, 32)[..., 0])
    ]
    assert any(im.readonly for im in images)
    for im in images:
        assert np.array_equal(pixel_view(im), np.asarray(im))


def test_view_outlives_the_image() -> None:
    arr = S.random_rgba(300, 200)
    im = Image.fromarray(arr).copy()
    view = pixel_view(im)
    del im
    gc.collect()
    _ = [Image.new("RGBA", (200, 300), (9, 9, 9, 9)) for _ in range(10)]  # reuse freed memory if any
    assert np.array_equal(view, arr)


def test_snapshot_does_not_follow_later_edits() -> None:
    im = Image.new("RGB", (4, 4), (1, 2, 3))
    snapshot = pixel_array(im)
    im.paste((9, 9, 9), (0, 0, 4, 4))
    assert snapshot[0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("size", [(3000, 2000), (1, 1)])
def test_large_multi_block_images_fall_back(size: tuple[int, int]) -> None:
    im = Image.new("RGBA", size, (1, 2, 3, 4))
    view = pixel_view(im)
    assert view.shape == (size[1], size[0], 4) and view[-1, -1].tolist() == [1, 2, 3, 4]
