"""Depth sources: the episode's own depth, and transformers' ZoeDepth on a tiny random model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stvla_core.depth import DEPTH_ESTIMATORS, DepthUnavailableError
from stvla_core.registry import UnknownNameError


def tiny_zoedepth(path: Path) -> Path:
    """Save a randomly initialised ZoeDepth of the real architecture (BEiT backbone, metric bins)."""
    import torch
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation, ZoeDepthImageProcessorPil

    torch.manual_seed(0)
    backbone = BeitConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=64,
        patch_size=16,
        out_indices=[1, 2, 3, 4],
        use_relative_position_bias=True,
        reshape_hidden_states=False,
    )
    cfg = ZoeDepthConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[16, 32, 32, 32],
        fusion_hidden_size=16,
        bottleneck_features=16,
        bin_embedding_dim=16,
        num_relative_features=8,
        reassemble_factors=[4, 2, 1, 0.5],
        num_attractors=[4, 2, 2, 2],
        bin_configurations=[{"n_bins": 8, "min_depth": 0.001, "max_depth": 10.0}],
    )
    ZoeDepthForDepthEstimation(cfg).save_pretrained(path)
    ZoeDepthImageProcessorPil(size={"height": 64, "width": 64}, ensure_multiple_of=16).save_pretrained(path)
    return path


def test_episode_depth_passes_given_depth_and_cleans_invalid() -> None:
    est = DEPTH_ESTIMATORS.create("episode")
    given = np.array([[1.0, np.nan], [np.inf, -1.0]], np.float32)
    out = est.estimate(np.zeros((2, 2, 3), np.uint8), given)
    np.testing.assert_array_equal(out, [[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(DepthUnavailableError, match="has none; choose a model source"):
        est.estimate(np.zeros((2, 2, 3), np.uint8), None)
    with pytest.raises(ValueError, match=r"depth has shape \(2, 2\), frame is \(3, 2\)"):
        est.estimate(np.zeros((3, 2, 3), np.uint8), given)


def test_zoedepth_tiny_random_model_gives_metric_depth_at_frame_size(tmp_path: Path) -> None:
    est = DEPTH_ESTIMATORS.create("zoedepth", model=str(tiny_zoedepth(tmp_path / "zoe")))
    frame = np.random.default_rng(0).integers(0, 255, (48, 60, 3), dtype=np.uint8)
    d = est.estimate(frame)
    assert d.shape == (48, 60) and d.dtype == np.float32
    assert np.isfinite(d).all() and (d > 0).all() and (d <= 10.0).all()  # within the bin range
    np.testing.assert_array_equal(d, est.estimate(frame))  # deterministic in eval mode


def test_missing_weights_say_which_and_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DepthUnavailableError, match=r"depth model '.*nope'.*hf download"):
        DEPTH_ESTIMATORS.create("zoedepth", model=str(tmp_path / "nope"))


def test_unknown_depth_source() -> None:
    with pytest.raises(UnknownNameError, match="unknown depth estimator 'lidar'"):
        DEPTH_ESTIMATORS.create("lidar")
