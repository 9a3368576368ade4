"""Where the shipped trained model lives, importable without torch (the app's settings read it)."""

from __future__ import annotations

from pathlib import Path

# ST-VLA-S, the shipped trained policy (`python -m stvla_core.train`); "stvla-s" names it wherever a
# checkpoint is asked for, and it is the default wherever its files are present
STVLA_S_NAME = "stvla-s"
STVLA_S_DIR = Path(__file__).resolve().parents[2] / "assets" / "models" / "stvla-s"


def stvla_s_available() -> bool:
    return (STVLA_S_DIR / "config.json").is_file()


def default_checkpoint() -> str:
    """ "stvla-s" when the shipped trained model is present, else "tiny" (untrained)."""
    return STVLA_S_NAME if stvla_s_available() else "tiny"
