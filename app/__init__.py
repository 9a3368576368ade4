"""The Gradio skin of ST-VLA Studio: layout (layout.py), handlers (inspector.py), the frame cache
(cache.py), settings (settings.py), charts (plots.py) and downloads (export.py)."""

from app.inspector import AppContext, Inspector
from app.layout import CSS, build_app
from app.settings import AppSettings, parse_args

__all__ = ["CSS", "AppContext", "AppSettings", "Inspector", "build_app", "parse_args"]
