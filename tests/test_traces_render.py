"""Traced depth rendering (variants A, B, C) against hand-computed pixels."""

from __future__ import annotations

import numpy as np
import pytest

from stvla_core.traces.draw import TRACE_OUTLINE, colorize_depth, depth_range, draw_overlay, draw_traced
from stvla_core.traces.render import nearest_depth, sample_depth, traced_depth, traced_depth_and_mask
from stvla_core.tracking import Tracks

H, W = 10, 12


def ramp() -> np.ndarray:
    """depth[y, x] = 1 + 0.1 x metres."""
    return np.tile((1.0 + 0.1 * np.arange(W, dtype=np.float32))[None], (H, 1))


def straight_trace() -> Tracks:
    """One trace over 3 frames: (2, 5) -> (5, 5) -> (8, 5), all visible."""
    pts = np.array([[[2, 5]], [[5, 5]], [[8, 5]]], np.float32)
    return Tracks(pts, np.ones((3, 1), bool))


def test_variant_b_draws_farthest_depth_on_exact_pixels() -> None:
    out = traced_depth("B", ramp(), straight_trace(), thickness=1)
    expected = ramp()
    expected[5, 2:9] = 1.0 + 0.1 * 11  # farthest valid depth of frame t
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_variant_c_draws_nearest_depth_on_exact_pixels() -> None:
    out = traced_depth("C", ramp(), straight_trace(), thickness=1)
    expected = ramp()
    expected[5, 2:9] = 1.0
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_variant_a_interpolates_each_points_own_depth() -> None:
    # frame k of the window has constant depth 3.0, 2.0, 1.5: the point's depth at its own step
    window = np.stack([np.full((H, W), v, np.float32) for v in (3.0, 2.0, 1.5)])
    out = traced_depth("A", ramp(), straight_trace(), window, thickness=1)
    expected = ramp()
    expected[5, 2:6] = [3.0, 3.0 - 1 / 3, 3.0 - 2 / 3, 2.0]
    expected[5, 6:9] = [2.0 - 0.5 / 3, 2.0 - 1.0 / 3, 1.5]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_thickness_three_covers_a_plus_shaped_band() -> None:
    out = traced_depth("C", ramp(), straight_trace(), thickness=3)
    drawn = out == 1.0
    drawn[:, 0] = False  # column 0 of the ramp is 1.0 itself
    ys, xs = np.nonzero(drawn)
    assert set(ys) == {4, 5, 6}
    assert xs.min() == 1 and xs.max() == 9  # the disk of diameter 3 reaches one pixel past each end


def test_invisible_steps_are_not_drawn() -> None:
    tr = straight_trace()
    vis = tr.visible.copy()
    vis[0, 0] = False  # the oldest point lost: only the segment 5 -> 8 remains
    out = traced_depth("B", ramp(), Tracks(tr.points, vis), thickness=1)
    changed = np.nonzero(out != ramp())
    assert sorted(set(changed[1])) == list(range(5, 9))


def test_invalid_depth_is_zero_and_ignored_by_b_and_c() -> None:
    d = ramp()
    d[0, 0] = np.nan
    d[0, 1] = np.inf
    d[0, 11] = 0.0  # the farthest column's top pixel invalid; others in that column still valid
    d[1, 11] = 50.0
    d[1, 11] = np.nan
    out_b = traced_depth("B", d, straight_trace(), thickness=1)
    assert out_b[0, 0] == 0 and out_b[0, 1] == 0 and out_b[1, 11] == 0
    assert np.isfinite(out_b).all()
    assert out_b[5, 4] == pytest.approx(2.1)
    out_c = traced_depth("C", d, straight_trace(), thickness=1)
    assert out_c[5, 4] == pytest.approx(1.0)


def test_variant_a_skips_segments_without_any_valid_depth() -> None:
    window = np.zeros((3, H, W), np.float32)
    window[2] = 4.0  # only the newest frame has depth: segment 5 -> 8 takes 4.0 at both ends
    out = traced_depth("A", ramp(), straight_trace(), window, thickness=1)
    np.testing.assert_allclose(out[5, 5:9], 4.0)
    np.testing.assert_allclose(out[5, 2:5], ramp()[5, 2:5])


def test_all_invalid_depth_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no valid pixel"):
        traced_depth("C", np.zeros((H, W), np.float32), straight_trace())


def test_unknown_variant_and_bad_thickness() -> None:
    with pytest.raises(ValueError, match="unknown variant 'D'"):
        traced_depth("D", ramp(), straight_trace())
    with pytest.raises(ValueError, match="thickness must be >= 1"):
        traced_depth("B", ramp(), straight_trace(), thickness=0)
    with pytest.raises(ValueError, match="variant A needs window depths"):
        traced_depth("A", ramp(), straight_trace(), np.zeros((2, H, W), np.float32))


def test_nearest_segmented_object() -> None:
    d = ramp()
    seg = np.zeros((H, W), np.int32)
    seg[:, 0:2] = 1  # "table": nearest pixels but ignored
    seg[:, 6:8] = 2  # object at x 6..7: median 1.65
    seg[:, 9:11] = 3  # object at x 9..10: median 1.95
    assert nearest_depth(d, seg, ignore_ids=(0, 1)) == pytest.approx(1.65)
    assert nearest_depth(d) == pytest.approx(1.0)


def test_sample_depth_bilinear_and_invalid() -> None:
    d = ramp()
    got = sample_depth(d, np.array([[2.5, 3.0], [0.0, 0.0]], np.float32))
    np.testing.assert_allclose(got, [1.25, 1.0], atol=1e-6)
    d[:, :] = 0
    assert np.isnan(sample_depth(d, np.array([[3.0, 3.0]], np.float32))).all()


def test_colorize_shared_scale_and_overlay() -> None:
    a, b = ramp(), ramp() + 1.0
    lo, hi = depth_range(a, b)
    assert (lo, hi) == pytest.approx((1.0, 3.1))
    ca = colorize_depth(a, lo, hi)
    cb = colorize_depth(b, lo, hi)
    assert ca.shape == (H, W, 3) and ca.dtype == np.uint8
    assert not np.array_equal(ca[0, 0], cb[0, 0])  # same depth value -> same colour, different here
    np.testing.assert_array_equal(
        colorize_depth(b, lo, hi)[0, 0], colorize_depth(np.full((1, 1), 2.0, np.float32), lo, hi)[0, 0]
    )
    bad = a.copy()
    bad[3, 3] = 0
    assert (colorize_depth(bad, lo, hi)[3, 3] == 0).all()
    rgb = np.zeros((H, W, 3), np.uint8)
    over = draw_overlay(rgb, straight_trace(), thickness=1)
    assert over[5, 3].any() and not over[0, 0].any()
    assert not rgb.any()  # the input frame is not drawn on


@pytest.mark.parametrize("variant", ["A", "B", "C"])
def test_pictures_outline_the_traces_and_the_maps_keep_true_values(variant: str) -> None:
    depth = ramp()
    depth[0, 0] = 0.0  # one invalid pixel, far from the trace
    window = np.stack([depth] * 3)
    out, mask = traced_depth_and_mask(variant, depth, straight_trace(), window, thickness=1)
    np.testing.assert_array_equal(out, traced_depth(variant, depth, straight_trace(), window, thickness=1))
    want = np.zeros((H, W), bool)
    want[5, 2:9] = True  # the trace's pixels
    np.testing.assert_array_equal(mask, want)
    lo, hi = depth_range(out)
    pic = draw_traced(out, mask, lo, hi)
    plain = colorize_depth(out, lo, hi)
    np.testing.assert_array_equal(pic[mask], plain[mask])  # trace pixels keep their depth colour
    ring = np.zeros((H, W), bool)
    ring[4:7, 1:10] = True
    ring &= ~mask  # the 1-px ring around the trace
    assert (pic[ring] == TRACE_OUTLINE).all()
    np.testing.assert_array_equal(pic[~(ring | mask)], plain[~(ring | mask)])
    assert (pic[0, 0] == 0).all()  # invalid stays black
    # white is nowhere on the colour scale: the outline never reads as a depth
    scale = colorize_depth(np.linspace(lo, hi, 256, dtype=np.float32)[None], lo, hi)
    assert not (scale == TRACE_OUTLINE).all(axis=-1).any()
