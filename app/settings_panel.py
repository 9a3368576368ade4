"""Settings panel handlers: show which backends are active, and apply new ones while running."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.inspector import AppContext, describe, error_box

STATUS_HEADERS = ["component", "setting", "state", "detail"]


def status_table(ctx: AppContext) -> list[list[str]]:
    return ctx.backends.status_rows()


def apply_settings(
    ctx: AppContext, policy: str, lora: str, depth_model: str, cotracker_checkpoint: str
) -> tuple[Any, str]:
    """Load the named backends (a failed load falls back to the offline default and says so).
    Cached results of the older backends are not reused: the cache key holds the generation."""
    try:
        settings = ctx.settings.with_changes(
            policy=(policy or "tiny").strip(),
            lora=(lora or "").strip(),
            depth_model=(depth_model or "").strip(),
            cotracker_checkpoint=(cotracker_checkpoint or "").strip(),
        )
        ctx.backends.apply(settings)
        ctx.settings = settings
    except Exception as e:
        return gr.skip(), error_box(describe(e))
    failed = [f"{s.component}: {s.detail}" for s in ctx.backends.states if s.state == "failed"]
    return status_table(ctx), error_box("; ".join(failed))
