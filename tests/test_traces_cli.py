"""`python -m stvla_core.traces` writes A/B/C maps and overlays for every step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
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


# -- user errors: one `error:` line on stderr, exit status 2, nothing traced ------------------
def _fails(argv: list[str], capsys) -> str:  # type: ignore[no-untyped-def]
    """Run the CLI in-process; return its one error line after checking status and output."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _npz(tmp_path: Path, **changes) -> str:  # type: ignore[no-untyped-def]
    ep = translating_episode(t=4, dx=2.0).replace(**changes)
    return str(save_episode(ep, tmp_path / "ep.npz"))


def test_nearest_segmentation_without_segmentation(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    line = _fails([_npz(tmp_path), "--nearest", "segmentation", "--out", str(out)], capsys)
    assert line == "error: --nearest segmentation needs an episode with segmentation; 'translate' has none"
    assert not out.exists()


def test_segmentation_with_only_ignored_objects(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    seg = np.zeros((4, 64, 80), np.int32)
    seg[:, :, 40:] = 2
    path = _npz(tmp_path, segmentation=seg, segmentation_names={2: "table"})
    line = _fails([path, "--nearest", "segmentation", "--out", str(tmp_path / "out")], capsys)
    assert "frame 0 of 'translate' has no segmented object with valid depth" in line
    assert "use --nearest min" in line


def test_all_zero_depth(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    depth = np.ones((4, 64, 80), np.float32)
    depth[2:] = 0.0
    line = _fails([_npz(tmp_path, depth=depth), "--out", str(tmp_path / "out")], capsys)
    assert "--depth episode: 'translate' has no valid depth (all 0) on 2 of 4 frames, first frame 2" in line
    assert "--depth zoedepth" in line
    assert not (tmp_path / "out").exists()


def test_depth_episode_on_a_video_without_depth(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    video = save_episode(translating_episode(t=3), tmp_path / "clip.mp4")
    out = tmp_path / "out"
    line = _fails([str(video), "--depth", "episode", "--out", str(out)], capsys)
    assert line.startswith("error: depth source 'episode' needs depth recorded with the frames")
    assert list(out.iterdir()) == []


def test_oracle_tracker_without_ground_truth(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = _npz(tmp_path, gt_points=None, gt_visible=None)
    line = _fails([path, "--tracker", "oracle", "--out", str(tmp_path / "out")], capsys)
    assert line.startswith("error: tracker 'oracle' needs ground-truth point positions")


@pytest.mark.parametrize("where", ["file", "under a file", "not permitted"])
def test_out_that_cannot_be_a_folder(tmp_path: Path, capsys, where: str) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "taken"
    blocker.write_text("someone's notes")
    out = {
        "file": blocker,
        "under a file": blocker / "out",
        "not permitted": Path("/sys/stvla-traces-out"),  # refused even to root
    }[where]
    line = _fails([_npz(tmp_path), "--out", str(out)], capsys)
    expected = {
        "file": f"error: --out {str(out)!r}: expected a folder, found a file",
        "under a file": f"error: --out {str(out)!r} cannot be written: Not a directory",
        "not permitted": f"error: --out {str(out)!r} cannot be written: ",
    }[where]
    assert line.startswith(expected)
    assert blocker.read_text() == "someone's notes"


def test_quality_on_a_one_frame_episode(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = str(save_episode(translating_episode(t=1), tmp_path / "one.npz"))
    line = _fails([path, "--quality", "--tracker", "oracle", "--out", str(tmp_path / "out")], capsys)
    assert line == (
        "error: --quality follows ground-truth points across frames and needs an episode of at least "
        "2 frames; 'translate' has 1"
    )


def test_variant_all_applies_nearest_segmentation_to_c(tmp_path: Path) -> None:
    """--variant all writes the same C map as --variant C, segmentation included."""
    seg = np.zeros((4, 64, 80), np.int32)
    seg[:, :, 60:] = 3  # an object on the far (2 m) side: C differs from the minimum depth
    path = _npz(tmp_path, segmentation=seg, segmentation_names={3: "cup"})
    common = [path, "--tracker", "oracle", "--buffer", "3"]
    runs = {"min": ["C", "min"], "C": ["C", "segmentation"], "all": ["all", "segmentation"]}
    for out, (variant, nearest) in runs.items():
        assert main([*common, "--variant", variant, "--nearest", nearest, "--out", str(tmp_path / out)]) == 0
    c = {out: np.load(tmp_path / out / "traced.npz")["traced_C"] for out in runs}
    assert (c["C"] != c["min"]).any()  # the traces carry the cup's depth, not the minimum
    np.testing.assert_array_equal(c["all"], c["C"])
