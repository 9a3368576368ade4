"""Depth sources, one registry: `episode` (recorded), `zoedepth`, `depth_anything`, `policy` (the
policy model's own estimate)."""

from stvla_core.depth import episode_depth, hf_depth, policy_depth  # noqa: F401  (registers the sources)
from stvla_core.depth.base import DEPTH_ESTIMATORS, DepthEstimator, DepthUnavailableError, sanitize_depth

__all__ = ["DEPTH_ESTIMATORS", "DepthEstimator", "DepthUnavailableError", "sanitize_depth"]
