"""Downloads: the actions table (CSV) and an archive of the episode's traced depth maps (metres,
npz), their colourised pictures and overlays (PNG per step) and a side-by-side video (MP4)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd

from app.cache import EpisodeRun
from stvla_core.episodes import ACTION_NAMES
from stvla_core.traces import VARIANTS, colorize_depth, depth_range, draw_traced


def actions_table(run: EpisodeRun) -> pd.DataFrame:
    """One row per step: recorded (when the episode has actions) and predicted actions."""
    for t in range(len(run.steps)):
        run.step(t)
    pred = run.predicted_actions()
    cols: dict[str, np.ndarray] = {"step": np.arange(len(pred))}
    if run.episode.actions is not None:
        cols |= {f"recorded_{n}": run.episode.actions[:, d] for d, n in enumerate(ACTION_NAMES)}
    cols |= {f"predicted_{n}": pred[:, d] for d, n in enumerate(ACTION_NAMES)}
    return pd.DataFrame(cols)


def write_actions_csv(run: EpisodeRun, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    actions_table(run).to_csv(p, index=False, float_format="%.6g")
    return p


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))


def panel_video(panels: list[np.ndarray], fps: float) -> bytes:
    """H.264 MP4 of equally sized (H, W, 3) uint8 RGB panels."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as box:
        stream = box.add_stream("libx264", rate=max(1, round(fps)))
        stream.height, stream.width = _even(panels[0]).shape[:2]
        stream.pix_fmt = "yuv420p"
        for img in panels:
            for packet in stream.encode(av.VideoFrame.from_ndarray(_even(img), format="rgb24")):
                box.mux(packet)
        for packet in stream.encode():
            box.mux(packet)
    return out.getvalue()


def write_episode_zip(run: EpisodeRun, path: str | Path) -> Path:
    """traced_depth.npz: A, B, C (T, H, W) float32 metres, depth, window ends; png/<step>_*.png:
    overlay, depth and A/B/C on one colour scale per step; panel.mp4: overlay | A | B | C;
    actions.csv."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ep = run.episode
    maps = {v: [] for v in VARIANTS}
    depth, panels = [], []
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for t in range(ep.num_frames):
            f = run.traced_frame(t)
            vmin, vmax = depth_range(f.depth, *f.traced.values())
            pics = {"overlay": f.overlay, "depth": colorize_depth(f.depth, vmin, vmax)}
            pics |= {v: draw_traced(f.traced[v], f.masks[v], vmin, vmax) for v in VARIANTS}
            for name, img in pics.items():
                z.writestr(f"png/{t:04d}_{name}.png", _png(img))
            panels.append(np.concatenate([pics["overlay"], *(pics[v] for v in VARIANTS)], axis=1))
            for v in VARIANTS:
                maps[v].append(f.traced[v])
            depth.append(f.depth)
        buf = io.BytesIO()
        np.savez_compressed(buf, depth=np.stack(depth), **{v: np.stack(m) for v, m in maps.items()})
        z.writestr("traced_depth.npz", buf.getvalue())
        z.writestr("panel.mp4", panel_video(panels, ep.fps))
        z.writestr("actions.csv", actions_table(run).to_csv(index=False, float_format="%.6g"))
        z.writestr(
            "README.txt",
            f"episode {ep.name!r}: {ep.num_frames} steps, instruction {ep.instruction!r}\n"
            f"settings: {run.view}\npanel.mp4 columns: overlay | A | B | C (shared colour scale per step,"
            " red near, blue far, black invalid, traces outlined in white)\ntraced_depth.npz: metres, 0 = invalid (true values: no outline)\n",
        )
    return p
