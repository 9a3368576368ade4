"""A folder of PNG/JPEG frames, ordered naturally by file name (frame_2 before frame_10), with an
optional `episode.json` sidecar in the folder (instruction, fps, actions (T, 7), intrinsics (3, 3),
name, source, metadata). Saving writes lossless PNGs `frame_000000.png`... and the sidecar into a
temporary folder beside the target, renamed into place when complete."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from stvla_core.episodes.episode import Episode, EpisodeError
from stvla_core.episodes.formats.io import (
    build_episode,
    episode_sidecar,
    read_json,
    sidecar_fields,
    umask,
    where,
)
from stvla_core.episodes.formats.registry import (
    EpisodeFormat,
    LoadLimits,
    check_decoded,
    check_frame_size,
    check_size,
    register_format,
    register_save_suffixes,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SIDECAR = "episode.json"
DEFAULT_FPS = 10.0


def natural_key(name: str) -> list[Any]:
    """'frame_10' sorts after 'frame_2': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _is_frame(p: Path) -> bool:
    # hidden files are left out: macOS copies leave "._frame_001.png" resource forks beside frames
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def frame_files(folder: Path) -> list[Path]:
    return sorted(filter(_is_frame, folder.iterdir()), key=lambda p: natural_key(p.name))


def _unreadable(what: str) -> EpisodeError:
    return EpisodeError(f"{what} is not a readable PNG/JPEG image (corrupt, truncated or empty)")


def image_size(data: bytes, what: str, limits: LoadLimits) -> tuple[int, int]:
    """(height, width) from a PNG/JPEG header, checked against the frame-size limit before any
    pixel is decoded (Pillow opens lazily and reads only the header)."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError as e:  # Pillow's own limit, far above ours
        raise EpisodeError(f"{what}: over the limit of {limits.max_side} px per side ({e})") from None
    except (OSError, ValueError):
        raise _unreadable(what) from None
    check_frame_size(height, width, limits, what)
    return height, width


def decode_image(data: bytes, what: str, limits: LoadLimits) -> np.ndarray:
    """(H, W, 3) uint8 RGB from PNG/JPEG bytes, its size checked first (`image_size`). OpenCV
    turns grey, alpha and 16-bit images into 8-bit RGB, and refuses truncated files (returns
    None) rather than padding them with grey."""
    image_size(data, what, limits)
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if rgb is None:
        raise _unreadable(what)
    return rgb


def _read_image(path: Path, limits: LoadLimits) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EpisodeError(f"frame {where(path)} cannot be read: {e}") from None
    return decode_image(data, f"frame {where(path)}", limits)


def _encode_png(rgb: np.ndarray, path: Path) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise EpisodeError(f"cannot encode frame {where(path)} as PNG")
    path.write_bytes(buf.tobytes())


def load_frames_episode(path: Path, limits: LoadLimits) -> Episode:
    if not path.is_dir():
        raise EpisodeError(f"{where(path)} is not a folder of frames")
    files = frame_files(path)
    if not files:
        raise EpisodeError(f"folder {where(path)} holds no {'/'.join(IMAGE_SUFFIXES)} frames")
    if len(files) > limits.max_frames:
        raise EpisodeError(
            f"folder {where(path)} holds {len(files)} frames, over the limit of {limits.max_frames}"
        )
    check_size(files, limits, path)
    side = path / SIDECAR
    fields = sidecar_fields(read_json(side), side) if side.is_file() else {}
    frames = [_read_image(files[0], limits)]
    check_decoded(len(files) * frames[0].nbytes, limits, f"folder {where(path)}")
    for f in files[1:]:
        rgb = _read_image(f, limits)
        if rgb.shape != frames[0].shape:
            raise EpisodeError(
                f"frame {where(f)} is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"expected {frames[0].shape[1]}x{frames[0].shape[0]} like {files[0].name!r}"
            )
        frames.append(rgb)
    fields.setdefault("fps", DEFAULT_FPS)
    fields.setdefault("name", path.name)
    fields.setdefault("source", str(path))
    return build_episode(np.stack(frames), fields, side if side.is_file() else path)


def save_frames_episode(episode: Episode, path: Path) -> None:
    """Refuses to replace a non-empty folder (it may be someone's data, not an earlier save)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise EpisodeError(f"cannot write a frames folder at {where(path)}: it exists and is not empty")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        for i, rgb in enumerate(episode.frames):
            _encode_png(rgb, tmp / f"frame_{i:06d}.png")
        (tmp / SIDECAR).write_text(json.dumps(episode_sidecar(episode), indent=1))
        os.chmod(tmp, 0o777 & ~umask())
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _detect(p: Path) -> bool:
    return p.is_dir() and any(map(_is_frame, p.iterdir()))


register_format(
    EpisodeFormat(
        "frames",
        _detect,
        load_frames_episode,
        save_frames_episode,
        f"a folder of {'/'.join(IMAGE_SUFFIXES)} frames with an optional {SIDECAR}",
    )
)
register_save_suffixes("frames", "")
