"""`python -m stvla_core.traces` writes A/B/C maps and overlays for every step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from conftest import translating_episode

from stvla_core.episodes import save_episode
from stvla_core.traces.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def test_cli_writes_every_step_and_variant(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ep = translating_episode(t=8, dx=2.0)
    path = save_episode(ep, tmp_path / "ep.npz")
    out = tmp_path / "out"
    assert (
        main(
            [
                str(path),
                "--variant",
                "all",
                "--tracker",
                "oracle",
                "--buffer",
                "4",
                "--out",
                str(out),
                "--quality",
            ]
        )
        == 0
    )
    for t in range(8):
        for name in ("A", "B", "C", "overlay"):
            img = cv2.imread(str(out / f"step_{t:04d}_{name}.png"))
            assert img is not None and img.shape == (64, 80, 3)
    z = np.load(out / "traced.npz")
    assert z["traced_C"].shape == (8, 64, 80) and z["traced_C"].dtype == np.float32
    np.testing.assert_array_equal(z["depth"], ep.depth)
    assert (z["traced_B"][5] != ep.depth[5]).any()
    text = capsys.readouterr().out
    assert "wrote 8 steps x 3 variants" in text and "tracker oracle vs ground-truth points" in text
    assert (out / "tracker_quality.csv").read_text().startswith("step,points,median_px")
    assert not list(out.glob("*.tmp*"))


def test_cli_reports_bad_input_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip at all")
    r = subprocess.run(
        [sys.executable, "-m", "stvla_core.traces", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2
    assert "corrupt or truncated" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "stvla_core.traces",
            str(bad),
            "--tracker",
            "sift",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2 and "unknown tracker 'sift'" in r.stderr
