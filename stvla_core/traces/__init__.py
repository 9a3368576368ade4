"""Traced depth maps (ST-VLA variants A, B, C), the RGB overlay, quality against ground truth."""

from stvla_core.traces.draw import colorbar, colorize_depth, depth_range, draw_overlay, draw_traced
from stvla_core.traces.pipeline import TraceConfig, TracedFrame, TracePipeline, episode_key
from stvla_core.traces.render import VARIANTS, traced_depth

__all__ = [
    "VARIANTS",
    "TraceConfig",
    "TracePipeline",
    "TracedFrame",
    "colorbar",
    "colorize_depth",
    "depth_range",
    "draw_overlay",
    "draw_traced",
    "episode_key",
    "traced_depth",
]
