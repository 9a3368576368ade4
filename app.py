"""Start ST-VLA Studio: `python app.py` serves http://127.0.0.1:7860 offline on the bundled
episodes; `python app.py --help` lists the flags (each also an STVLA_* environment variable)."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main(argv: list[str] | None = None) -> None:
    from app import CSS, AppContext, build_app, parse_args

    try:
        settings = parse_args(argv)
    except (ValueError, KeyError) as e:  # a bad flag or environment variable: say which, no traceback
        sys.exit(f"app.py: {e}")
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


if __name__ == "__main__":
    main(sys.argv[1:])
