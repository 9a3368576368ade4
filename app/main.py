"""The app's entry point: `stvla-studio` (installed by `pip install -e .`) and `python app.py`
both call `main`, which serves http://127.0.0.1:7860 offline on the bundled episodes; `--help`
lists the flags (each also an STVLA_* environment variable)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app import CSS, AppContext, build_app, parse_args

    argv = sys.argv[1:] if argv is None else argv
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "stvla-studio"
    try:
        settings = parse_args(argv, prog=prog)
    except (ValueError, KeyError) as e:  # a bad flag or environment variable: say which, no traceback
        sys.exit(f"{prog}: {e}")
    ctx = AppContext.create(settings)
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=4)
    print(f"ST-VLA Studio: http://{settings.host}:{settings.port}", flush=True)
    try:
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            share=settings.share,
            css=CSS,
            max_file_size=settings.max_upload_bytes,
            allowed_paths=[str(ctx.work_dir)],
        )
    finally:
        ctx.close()
