"""Shared file helpers for the episode formats: video decode/encode through PyAV, sidecar JSON
parsing, and atomic writes. Errors are EpisodeErrors that name the file and the problem."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stvla_core.episodes.episode import Episode, EpisodeError
from stvla_core.episodes.formats.registry import LoadLimits, check_decoded, check_frame_size, check_regular

if TYPE_CHECKING:
    import av


def where(path: Path) -> str:
    return repr(str(path))


# -- atomic writes ----------------------------------------------------------------------------
def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers pick the right container);
    it is renamed onto `path` only when the block finishes, and removed if it raises."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- sidecar JSON -----------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    check_regular(path, "JSON file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EpisodeError(f"{where(path)} is not valid JSON: {e}") from None
    except OSError as e:
        raise EpisodeError(f"{where(path)} cannot be read: {e}") from None


SIDECAR_KEYS = (
    "instruction",
    "fps",
    "actions",
    "intrinsics",
    "name",
    "source",
    "metadata",
    "width",
    "height",
)


def sidecar_fields(data: Any, path: Path) -> dict[str, Any]:
    """Episode keyword arguments from a sidecar dict: instruction (str), fps (number), actions
    (T, 7), intrinsics (3, 3), name, source, metadata (dict). Other keys go into metadata. The
    Episode itself checks shapes against the frames; here we check the JSON types."""
    if not isinstance(data, dict):
        raise EpisodeError(f"sidecar {where(path)}: expected a JSON object, found {type(data).__name__}")
    out: dict[str, Any] = {}
    for key in ("instruction", "name", "source"):
        if key in data:
            if not isinstance(data[key], str):
                raise EpisodeError(
                    f"sidecar {where(path)} field {key!r}: expected a string, found {type(data[key]).__name__}"
                )
            out[key] = data[key]
    if "fps" in data:
        fps = data["fps"]
        if isinstance(fps, bool) or not isinstance(fps, int | float):
            raise EpisodeError(f"sidecar {where(path)} field 'fps': expected a number, found {fps!r}")
        out["fps"] = float(fps)
    for key in ("actions", "intrinsics"):
        if data.get(key) is not None:
            try:
                out[key] = np.asarray(data[key], dtype=np.float32)
            except (TypeError, ValueError) as e:
                raise EpisodeError(
                    f"sidecar {where(path)} field {key!r}: expected a numeric array, found {e}"
                ) from None
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise EpisodeError(
            f"sidecar {where(path)} field 'metadata': expected an object, found {type(metadata).__name__}"
        )
    extra = {k: v for k, v in data.items() if k not in SIDECAR_KEYS}
    out["metadata"] = {**extra, **metadata}
    return out


def episode_sidecar(episode: Episode) -> dict[str, Any]:
    """What a sidecar keeps of an episode (the inverse of `sidecar_fields`)."""
    return {
        "instruction": episode.instruction,
        "fps": episode.fps,
        "name": episode.name,
        "source": episode.source,
        "actions": None if episode.actions is None else episode.actions.tolist(),
        "intrinsics": None if episode.intrinsics is None else episode.intrinsics.tolist(),
        "metadata": episode.metadata,
    }


def sidecar_path(video: Path) -> Path:
    return video.with_suffix(".json")


def build_episode(frames: np.ndarray, fields: dict[str, Any], described_by: Path) -> Episode:
    """An Episode whose validation error, if any, names the file the bad field came from."""
    try:
        return Episode(frames=frames, **fields)
    except EpisodeError as e:
        raise EpisodeError(f"{where(described_by)}: {e}") from None


# -- video ------------------------------------------------------------------------------------
def _rate(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) < 1000:
            return float(rate)
    return None


def decode_video(
    path: Path,
    limits: LoadLimits,
    start_s: float | None = None,
    end_s: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """All frames of the first video stream as (T, H, W, 3) uint8 RGB, their times in seconds
    (T,), and the stream's frame rate (None when the file does not say). With start_s/end_s only
    frames whose time lies in [start_s, end_s) are kept (half a frame of slack either side)."""
    import av  # PyAV only where video is read or written

    check_regular(path, "video file")
    if path.stat().st_size == 0:
        raise EpisodeError(f"video file {where(path)} is empty")
    frames: list[np.ndarray] = []
    times: list[float] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EpisodeError(f"{where(path)} has no video stream")
            stream = container.streams.video[0]
            if stream.codec_context is None:  # PyAV has no decoder for the stream's codec tag
                raise EpisodeError(f"{where(path)} has a video stream in a codec this tool cannot decode")
            check_frame_size(
                stream.codec_context.height, stream.codec_context.width, limits, f"video {where(path)}"
            )
            stream.thread_type = "AUTO"
            fps = _rate(stream)
            slack = 0.5 / fps if fps else 1e-3
            if start_s is not None and start_s > 0 and stream.time_base:
                container.seek(
                    int(max(0.0, start_s - slack) / stream.time_base), stream=stream, backward=True
                )
            for i, frame in enumerate(container.decode(stream)):
                t = float(frame.time) if frame.time is not None else i / (fps or 1.0)
                if start_s is not None and t < start_s - slack:
                    continue
                if end_s is not None and t >= end_s - slack:
                    break
                check_frame_size(frame.height, frame.width, limits, f"video {where(path)}")
                rgb = frame.to_ndarray(format="rgb24")
                if frames and rgb.shape != frames[0].shape:
                    raise EpisodeError(
                        f"{where(path)} frame {len(frames)} is {rgb.shape[1]}x{rgb.shape[0]}, "
                        f"earlier frames are {frames[0].shape[1]}x{frames[0].shape[0]}"
                    )
                frames.append(rgb)
                times.append(t)
                # the container's frame count lets a whole-file decode be refused at the first frame
                expected = stream.frames if start_s is None and end_s is None else 0
                check_decoded(max(expected, len(frames)) * rgb.nbytes, limits, f"video {where(path)}")
                if len(frames) > limits.max_frames:
                    raise EpisodeError(
                        f"{where(path)} holds more than {limits.max_frames} frames (the frame limit)"
                    )
    except EpisodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise EpisodeError(f"{where(path)} is not a readable video (corrupt or truncated?): {e}") from None
    if not frames:
        raise EpisodeError(f"{where(path)} holds no video frames")
    return np.stack(frames), np.asarray(times, dtype=np.float64), fps


def _even(frames: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sizes: repeat the last row/column where needed."""
    _, h, w, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def encode_video(frames: np.ndarray, path: Path, fps: float, crf: int = 17) -> None:
    """Write (T, H, W, 3) uint8 RGB frames to `path` as H.264 mp4 (yuv420p, sizes padded to even);
    callers make it atomic with `atomic_target`. GIF is read but not written: FFmpeg's fixed 3-3-2
    palette loses too much colour."""
    import av  # PyAV only where video is read or written

    frames = _even(frames)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        stream.height, stream.width = frames.shape[1:3]
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        out.mux(stream.encode(None))
