"""Fault tests for the episode loaders: each malformed, hostile or oversized input found by the
fault-probing pass of issue 14 ends in an EpisodeError naming the file and the field, never in a
raw Python error, a hang, a read outside the dataset or minutes of decoding."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from episode_fixtures import make_lerobot_v21, make_lerobot_v30, write_video

from stvla_core.episodes import Episode, EpisodeError, LoadLimits, load_episode, save_episode
from stvla_core.episodes.formats import frames as frames_format
from stvla_core.episodes.formats import native


def small_episode(t: int = 2, h: int = 6, w: int = 8) -> Episode:
    rng = np.random.default_rng(0)
    return Episode(
        frames=rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8),
        depth=np.ones((t, h, w), np.float32),
        segmentation=np.zeros((t, h, w), np.int32),
        segmentation_names={0: "table"},
        actions=np.zeros((t, 7), np.float32),
        name="small",
        metadata={"seed": 1},
    )


def refused(load: Callable[[], object]) -> str:
    """The EpisodeError message of a load that must fail, within 10 s (a hang fails the test)."""
    outcome: list[BaseException | object] = []
    worker = threading.Thread(target=lambda: outcome.append(_catch(load)), daemon=True)
    worker.start()
    worker.join(10)
    assert outcome, "the load did not return within 10 s"
    assert isinstance(outcome[0], EpisodeError), f"expected EpisodeError, got {outcome[0]!r}"
    return str(outcome[0])


def _catch(load: Callable[[], object]) -> BaseException | object:
    try:
        return load()
    except BaseException as e:  # noqa: BLE001  (the test judges what came out)
        return e


# -- the project's own .npz -------------------------------------------------------------------
def write_npz(path: Path, **entries: np.ndarray) -> Path:
    """An .npz written entry by entry (compressed), for contents save_episode would never make."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, array in entries.items():
            buf = io.BytesIO()
            np.save(buf, array)
            z.writestr(f"{name}.npy", buf.getvalue())
    return path


def episode_entries(**meta_changes: object) -> dict[str, np.ndarray]:
    meta = {"name": "ok", "fps": 10.0, **meta_changes}
    return {
        "format": np.array(native.FORMAT),
        "format_version": np.array(native.VERSION),
        "meta": np.array(json.dumps(meta)),
        "frames": np.zeros((2, 4, 4, 3), np.uint8),
    }


def test_corrupted_compressed_member_names_the_entry(tmp_path: Path) -> None:
    path = save_episode(small_episode(), tmp_path / "ep.npz")
    with zipfile.ZipFile(path) as z:
        member = z.getinfo("frames.npy")
    data = bytearray(path.read_bytes())
    header = data[member.header_offset : member.header_offset + 30]
    start = (
        member.header_offset
        + 30
        + int.from_bytes(header[26:28], "little")
        + int.from_bytes(header[28:30], "little")
    )
    data[start : start + 16] = b"\xff" * 16  # an invalid deflate block type: zlib.error before
    path.write_bytes(bytes(data))
    message = refused(lambda: load_episode(path))
    assert "ep.npz' entry 'frames' is not readable (corrupt or truncated)" in message
    assert "invalid block type" in message


def test_every_flipped_byte_and_truncation_is_an_episode_error(tmp_path: Path) -> None:
    """zlib.error, NotImplementedError (an unknown compression method or zip version) and the
    rest came out raw before; now one error type, whichever byte is damaged."""
    good = save_episode(Episode(frames=np.zeros((1, 2, 2, 3), np.uint8)), tmp_path / "good.npz").read_bytes()
    path = tmp_path / "bad.npz"
    raw: list[str] = []
    for i in range(len(good)):
        for data in (good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1 :], good[: i + 1]):
            path.write_bytes(data)
            try:
                load_episode(path)
            except EpisodeError:
                pass
            except Exception as e:  # noqa: BLE001
                raw.append(f"byte {i}: {type(e).__name__}: {e}")
    assert raw == []


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (
            {"segmentation_names": ["table", "cup"]},
            "entry 'meta' field 'segmentation_names': expected an object of id -> name, found list",
        ),
        (
            {"segmentation_names": {"1": "cup", "lid": "lid"}},
            "entry 'meta' field 'segmentation_names': expected integer ids as keys, found 'lid'",
        ),
        ({"segmentation_names": {"1": 7}}, "episode field 'segmentation_names': expected int id -> str name"),
        ({"name": 123}, "episode field 'name': expected a string, found int"),
        ({"metadata": ["a"]}, "episode field 'metadata': expected a JSON-serialisable dict, found list"),
        ({"gt_point_names": "tip"}, "episode field 'gt_point_names': expected a list of strings, found str"),
        ({"fps": "ten"}, "episode field 'fps': expected a finite number > 0, found 'ten'"),
        ({"colour": "red"}, "entry 'meta': unknown keys 'colour'; expected some of instruction"),
    ],
)
def test_bad_meta_field_is_named(tmp_path: Path, meta: dict, message: str) -> None:
    path = write_npz(tmp_path / "ep.npz", **episode_entries(**meta))
    found = refused(lambda: load_episode(path))
    assert found.startswith(f"{str(path)!r}") and message in found


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"meta": np.array("{name: 1}")}, "entry 'meta' is not valid JSON"),
        ({"meta": np.array(["{}", "{}"])}, "entry 'meta': expected a JSON string, found shape (2,)"),
        ({"meta": np.array("[1, 2]")}, "entry 'meta': expected a JSON object, found list"),
        (
            {"format_version": np.array("1")},
            "entry 'format_version': expected an integer, found shape () dtype <U1",
        ),
        (
            {"frames": np.zeros((2, 4, 4), np.uint8)},
            "entry 'frames': expected (T, H, W, 3) uint8 RGB, found shape (2, 4, 4)",
        ),
        ({"frames": np.zeros((2, 4, 4, 3), np.float32)}, "found shape (2, 4, 4, 3) dtype float32"),
    ],
)
def test_bad_entry_is_named(tmp_path: Path, change: dict, message: str) -> None:
    path = write_npz(tmp_path / "ep.npz", **{**episode_entries(), **change})
    assert message in refused(lambda: load_episode(path))


def test_missing_meta_is_refused_not_defaulted(tmp_path: Path) -> None:
    entries = episode_entries()
    del entries["meta"]
    path = write_npz(tmp_path / "ep.npz", **entries)
    assert "ep.npz' has no 'meta' entry" in refused(lambda: load_episode(path))


def test_a_single_npy_array_named_npz(tmp_path: Path) -> None:
    path = tmp_path / "ep.npz"
    with path.open("wb") as f:
        np.save(f, np.zeros((2, 4, 4, 3), np.uint8))
    assert "is a single .npy array, not an episode" in refused(lambda: load_episode(path))


def test_nan_depth_loads_as_0(tmp_path: Path) -> None:
    """The README's promise: invalid depth loads and reads as 0, it is not an error."""
    depth = np.ones((2, 4, 4), np.float32)
    depth[1, 2, 3] = np.nan
    path = write_npz(tmp_path / "ep.npz", **episode_entries(), depth=depth)
    loaded = load_episode(path)
    assert loaded.depth[1, 2, 3] == 0.0 and np.isfinite(loaded.depth).all()


def big_frames_npz(path: Path, t: int, side: int) -> Path:
    """An .npz whose frames header declares (t, side, side, 3); the body is left out, since the
    header is all the loader may read before refusing."""
    entries = episode_entries()
    del entries["frames"]
    write_npz(path, **entries)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (t, side, side, 3)}
    )
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("frames.npy", header.getvalue() + bytes(1024))
    return path


@pytest.mark.parametrize("decoded_limit", [LoadLimits().max_decoded_bytes, 2 * 1024**3])
def test_two_huge_frames_are_refused_by_the_side_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoded_limit: int
) -> None:
    """Two 10000x10000 frames (600 MB) fit the decoded-bytes limits (the default and the app's
    2 GiB) but cost minutes per step: the frame-size limit refuses them from the header."""
    path = big_frames_npz(tmp_path / "big.npz", 2, 10_000)
    getitem = np.lib.npyio.NpzFile.__getitem__

    def no_decompression(self: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
        assert key not in native.ARRAYS, f"decompressed {key!r} before checking the limits"
        return getitem(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", no_decompression)
    message = refused(lambda: load_episode(path, limits=LoadLimits(max_decoded_bytes=decoded_limit)))
    assert message == f"{str(path)!r} has 10000x10000 frames, over the limit of 4096 px per side"


# -- the frame-size limit in every format -----------------------------------------------------
@pytest.mark.parametrize("kind", ["ep.npz", "clip.mp4", "frames", "lerobot-images"])
def test_frame_size_limit_is_exact_at_the_boundary(tmp_path: Path, kind: str) -> None:
    ep = Episode(frames=np.full((2, 16, 24, 3), 90, np.uint8))
    if kind == "lerobot-images":
        path = lerobot_with_images(tmp_path / "ds", ep.frames)
    else:
        path = save_episode(ep, tmp_path / kind)
    assert load_episode(path, limits=LoadLimits(max_side=24)).frames.shape == (2, 16, 24, 3)
    message = refused(lambda: load_episode(path, limits=LoadLimits(max_side=23)))
    assert "has 24x16 frames, over the limit of 23 px per side" in message


def test_frames_are_refused_from_the_image_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = save_episode(Episode(frames=np.zeros((2, 40, 30, 3), np.uint8)), tmp_path / "frames")

    def no_decode(*args: object) -> None:
        raise AssertionError("decoded pixels before checking the frame size")

    monkeypatch.setattr(frames_format.cv2, "imdecode", no_decode)
    message = refused(lambda: load_episode(folder, limits=LoadLimits(max_side=32)))
    assert "frame_000000.png' has 30x40 frames, over the limit of 32 px per side" in message


def test_frame_that_is_not_an_image(tmp_path: Path) -> None:
    folder = save_episode(Episode(frames=np.zeros((2, 8, 8, 3), np.uint8)), tmp_path / "frames")
    (folder / "frame_000001.png").write_bytes(b"GIF89a this is no png")
    message = refused(lambda: load_episode(folder))
    assert "frame_000001.png' is not a readable PNG/JPEG image" in message


# -- only regular files are opened ------------------------------------------------------------
def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("format", [None, "npz", "video"])
def test_named_pipe_as_the_episode_path(tmp_path: Path, format: str | None) -> None:
    path = fifo(tmp_path / "ep.npz")
    message = refused(lambda: load_episode(path, format=format))
    assert message == f"episode file {str(path)!r}: expected a regular file or a folder, found a named pipe"


def test_named_pipe_as_a_sidecar(tmp_path: Path) -> None:
    write_video(np.zeros((2, 16, 16, 3), np.uint8), tmp_path / "clip.mp4")
    side = fifo(tmp_path / "side.json")
    message = refused(lambda: load_episode(tmp_path / "clip.mp4", sidecar=side))
    assert message == f"sidecar {str(side)!r}: expected a regular file, found a named pipe"
    fifo(tmp_path / "clip.json")  # the sidecar beside the video: not a file, so there is none
    assert load_episode(tmp_path / "clip.mp4").num_frames == 2


def test_named_pipe_as_lerobot_info(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "meta").mkdir(parents=True)
    fifo(root / "meta" / "info.json")
    message = refused(lambda: load_episode(root, format="lerobot"))
    assert message.endswith("meta/info.json': expected a regular file, found a named pipe")


def test_named_pipe_as_lerobot_episodes(pristine_v21: Path, tmp_path: Path) -> None:
    root = copy(pristine_v21, tmp_path)
    (root / "meta" / "episodes.jsonl").unlink()
    fifo(root / "meta" / "episodes.jsonl")
    assert "episodes.jsonl': expected a regular file, found a named pipe" in refused(
        lambda: load_episode(root)
    )


# -- LeRobot metadata -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pristine_v21(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lerobot_v21(tmp_path_factory.mktemp("v21") / "ds")


@pytest.fixture(scope="module")
def pristine_v30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lerobot_v30(tmp_path_factory.mktemp("v30") / "ds", codec="libx264")


def copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "ds"))


def edit_info(root: Path, **changes: object) -> Path:
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info.update(changes)
    info_path.write_text(json.dumps(info))
    return root


INFO_FAULTS = [
    ({"fps": "ten"}, "field 'fps': expected a number > 0, found 'ten'"),
    ({"fps": 0}, "field 'fps': expected a number > 0, found 0"),
    ({"fps": True}, "field 'fps': expected a number > 0, found True"),
    ({"chunks_size": "big"}, "field 'chunks_size': expected an integer, found 'big'"),
    ({"chunks_size": 0}, "field 'chunks_size': expected an integer > 0, found 0"),
    ({"codebase_version": 2.1}, "field 'codebase_version': expected a string, found 2.1"),
    (
        {"data_path": "data/chunk-{chunk:03d}/episode_{episode_index:06d}.parquet"},
        "field 'data_path': expected placeholders among {episode_chunk}, {episode_index}, found {chunk}",
    ),
    ({"data_path": 5}, "field 'data_path': expected a path template string, found int"),
    ({"data_path": ["data"]}, "field 'data_path': expected a path template string, found list"),
    ({"data_path": "data/{episode_index.__class__}.parquet"}, "found {episode_index.__class__}"),
    (
        {"data_path": "data/{}.parquet"},
        "expected placeholders among {episode_chunk}, {episode_index}, found {}",
    ),
    (
        {"data_path": "data/{episode_index:zz}.parquet"},
        "'data/{episode_index:zz}.parquet' is not a usable path template",
    ),
    (
        {"data_path": "data/{episode_index.parquet"},
        "'data/{episode_index.parquet' is not a usable path template",
    ),
    (
        {"video_path": "videos/{video_key}/{chunk_index}.mp4"},
        "field 'video_path': expected placeholders among {episode_chunk}, {video_key}, {episode_index}, found {chunk_index}",
    ),
]


@pytest.mark.parametrize(("changes", "message"), INFO_FAULTS, ids=[str(c) for c, _ in INFO_FAULTS])
def test_lerobot_info_field_is_named(pristine_v21: Path, tmp_path: Path, changes: dict, message: str) -> None:
    root = edit_info(copy(pristine_v21, tmp_path), **changes)
    found = refused(lambda: load_episode(root))
    assert found.startswith(f"LeRobot {str(root / 'meta' / 'info.json')!r}") and message in found


def outside_video(tmp_path: Path) -> Path:
    """A readable video beside the dataset: a loader that followed the template would load it."""
    path = tmp_path / "secret" / "episode_000000.mp4"
    write_video(np.full((4, 48, 64, 3), 200, np.uint8), path)
    return path


@pytest.mark.parametrize("template", ["absolute", "dotdot", "camera"])
def test_lerobot_video_path_outside_the_dataset(pristine_v21: Path, tmp_path: Path, template: str) -> None:
    root = copy(pristine_v21, tmp_path)
    target = outside_video(tmp_path)
    if template == "absolute":
        edit_info(root, video_path=str(target.parent) + "/episode_{episode_index:06d}.mp4")
        found = str(target)
    elif template == "dotdot":
        edit_info(root, video_path="videos/../../secret/episode_{episode_index:06d}.mp4")
        found = "videos/../../secret/episode_000000.mp4"
    else:  # a camera key is a placeholder value too
        info = json.loads((root / "meta" / "info.json").read_text())
        info["features"] = {"../secret": info["features"]["observation.images.top"], **info["features"]}
        edit_info(root, features=info["features"], video_path="{video_key}/episode_{episode_index:06d}.mp4")
        found = "../secret/episode_000000.mp4"
    message = refused(lambda: load_episode(root))
    assert message.endswith(f"field 'video_path': expected a path inside the dataset folder, found {found!r}")


def test_lerobot_data_path_outside_the_dataset_v30(pristine_v30: Path, tmp_path: Path) -> None:
    root = edit_info(
        copy(pristine_v30, tmp_path), data_path="/tmp/chunk-{chunk_index}/file-{file_index}.parquet"
    )
    message = refused(lambda: load_episode(root))
    assert message.endswith(
        "field 'data_path': expected a path inside the dataset folder, found '/tmp/chunk-0/file-0.parquet'"
    )


def test_lerobot_dotdot_that_stays_inside_is_fine(pristine_v21: Path, tmp_path: Path) -> None:
    root = edit_info(
        copy(pristine_v21, tmp_path),
        data_path="meta/../data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
    )
    assert load_episode(root).num_frames == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[0, 4]", "episodes.jsonl' line 2: expected a JSON object, found list"),
        (
            '{"episode_index": "1", "tasks": [], "length": 6}',
            "line 2 field 'episode_index': expected an integer, found '1'",
        ),
        (
            '{"episode_index": 1, "tasks": "open", "length": 6}',
            "line 2 field 'tasks': expected a list of strings, found 'open'",
        ),
    ],
)
def test_lerobot_episodes_row_is_named(pristine_v21: Path, tmp_path: Path, line: str, message: str) -> None:
    root = copy(pristine_v21, tmp_path)
    path = root / "meta" / "episodes.jsonl"
    rows = path.read_text().splitlines()
    path.write_text("\n".join([rows[0], line, rows[2]]) + "\n")
    assert message in refused(lambda: load_episode(root, episode_index=1))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"task_index": "zero", "task": "pick"}',
            "tasks.jsonl' line 1 field 'task_index': expected an integer, found 'zero'",
        ),
        (
            '{"task_index": 0, "task": ["pick"]}',
            "tasks.jsonl' line 1 field 'task': expected a string, found ['pick']",
        ),
        ("[0]", "tasks.jsonl' line 1: expected a JSON object, found list"),
    ],
)
def test_lerobot_tasks_row_is_named(pristine_v21: Path, tmp_path: Path, line: str, message: str) -> None:
    root = copy(pristine_v21, tmp_path)
    (root / "meta" / "tasks.jsonl").write_text(line + "\n")
    assert message in refused(lambda: load_episode(root))


def test_lerobot_episodes_file_not_utf8(pristine_v21: Path, tmp_path: Path) -> None:
    root = copy(pristine_v21, tmp_path)
    (root / "meta" / "episodes.jsonl").write_bytes(b'{"episode_index": 0, "tasks": ["\xff"]}\n')
    assert "episodes.jsonl' cannot be read" in refused(lambda: load_episode(root))


def rewrite_v30_episodes(root: Path, **columns: list) -> None:
    path = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    df = pd.read_parquet(path)
    for k, v in columns.items():
        df[k] = v
    df.to_parquet(path)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"episode_index": ["0", "1", "2"]}, "column 'episode_index': expected integers, found dtype"),
        (
            {"data/chunk_index": [np.nan, 0.0, 0.0]},
            "column 'data/chunk_index' of episode 0: expected an integer, found nan",
        ),
        (
            {"data/file_index": ["a", "b", "c"]},
            "column 'data/file_index' of episode 0: expected an integer, found 'a'",
        ),
        (
            {"videos/observation.images.top/from_timestamp": [-1.0, 0.4, 1.0]},
            "from_timestamp' of episode 0: expected a finite number of seconds >= 0, found -1.0",
        ),
        (
            {"tasks": ["pick", "open", "push"]},
            "column 'tasks' of episode 0: expected a list of strings, found 'pick'",
        ),
    ],
)
def test_lerobot_v30_episode_metadata_is_named(
    pristine_v30: Path, tmp_path: Path, columns: dict, message: str
) -> None:
    root = copy(pristine_v30, tmp_path)
    rewrite_v30_episodes(root, **columns)
    found = refused(lambda: load_episode(root))
    assert found.startswith(f"LeRobot dataset {str(root)!r} episode metadata") and message in found


def test_lerobot_v30_tasks_without_task_index(pristine_v30: Path, tmp_path: Path) -> None:
    root = copy(pristine_v30, tmp_path)
    pd.DataFrame({"task": ["pick"]}).to_parquet(root / "meta" / "tasks.parquet")
    assert "tasks.parquet' has no 'task_index' column" in refused(lambda: load_episode(root))


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("timestamp", ["0", "x", "0.2", "0.3"], "column 'timestamp': expected numbers of seconds"),
        (
            "timestamp",
            [0.0, np.nan, 0.2, 0.3],
            "column 'timestamp': expected finite seconds, found NaN or inf",
        ),
        ("task_index", [0.5] * 4, "column 'task_index': expected an integer, found 0.5"),
    ],
)
def test_lerobot_data_column_is_named(
    pristine_v21: Path, tmp_path: Path, column: str, values: list, message: str
) -> None:
    root = copy(pristine_v21, tmp_path)
    path = root / "data" / "chunk-000" / "episode_000000.parquet"
    df = pd.read_parquet(path)
    df[column] = values
    df.to_parquet(path)
    found = refused(lambda: load_episode(root))
    assert found.startswith(f"LeRobot file {str(path)!r}") and message in found


def lerobot_with_images(root: Path, frames: np.ndarray) -> Path:
    """A v2.1 dataset of one episode whose camera is an image feature stored as PNG bytes."""
    (root / "meta").mkdir(parents=True)
    info = {
        "codebase_version": "v2.1",
        "fps": 10,
        "chunks_size": 1000,
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": None,
        "features": {"observation.image": {"dtype": "image", "shape": list(frames.shape[1:])}},
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "episodes.jsonl").write_text(json.dumps({"episode_index": 0, "tasks": ["look"]}) + "\n")
    images = [{"bytes": cv2.imencode(".png", f)[1].tobytes(), "path": None} for f in frames]
    data = root / "data" / "chunk-000" / "episode_000000.parquet"
    data.parent.mkdir(parents=True)
    pd.DataFrame(
        {"observation.image": images, "episode_index": 0, "frame_index": range(len(frames))}
    ).to_parquet(data)
    return root


def test_lerobot_far_apart_episode_indices_are_listed_not_ranged(pristine_v21: Path, tmp_path: Path) -> None:
    """The 'it has episodes ...' listing must not build range(first, last): 10**30 overflowed."""
    root = copy(pristine_v21, tmp_path)
    path = root / "meta" / "episodes.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2]["episode_index"] = 10**30
    path.write_text("\n".join(map(json.dumps, rows)) + "\n")
    message = refused(lambda: load_episode(root, episode_index=7))
    assert message.endswith(f"has no episode 7; it has episodes 0, 1, {10**30}")


# -- videos -----------------------------------------------------------------------------------
def test_video_in_a_codec_without_decoder(tmp_path: Path) -> None:
    path = save_episode(Episode(frames=np.zeros((2, 16, 16, 3), np.uint8)), tmp_path / "clip.mp4")
    path.write_bytes(path.read_bytes().replace(b"avc1", b"zzzz"))  # PyAV then has no codec context
    assert (
        refused(lambda: load_episode(path))
        == f"{str(path)!r} has a video stream in a codec this tool cannot decode"
    )


def test_simplerenv_like_name_with_a_malformed_number_is_a_plain_video(tmp_path: Path) -> None:
    """`success_obj_1.2.3_4` matched the rollout pattern and then failed float('1.2.3')."""
    path = tmp_path / "success_obj_1.2.3_4.mp4"
    write_video(np.zeros((2, 16, 16, 3), np.uint8), path)
    assert load_episode(path).metadata == {}


# -- LeRobot depth features -------------------------------------------------------------------
def lerobot_with_depth(root: Path, depth_units: np.ndarray) -> Path:
    """The image dataset of `lerobot_with_images` (2 frames of 16x24) plus a 16-bit depth PNG
    feature per row, in millimetres."""
    lerobot_with_images(root, np.full((2, 16, 24, 3), 90, np.uint8))
    edit_info(
        root,
        features={
            **json.loads((root / "meta" / "info.json").read_text())["features"],
            "observation.depth": {
                "dtype": "image",
                "shape": [16, 24, 1],
                "info": {"depth": True, "camera": "observation.image", "scale_to_metres": 0.001},
            },
        },
    )
    data = root / "data" / "chunk-000" / "episode_000000.parquet"
    df = pd.read_parquet(data)
    df["observation.depth"] = [
        {"bytes": cv2.imencode(".png", d)[1].tobytes(), "path": None} for d in depth_units
    ]
    df.to_parquet(data)
    return root


def test_lerobot_depth_loads_in_metres(tmp_path: Path) -> None:
    root = lerobot_with_depth(tmp_path / "ds", np.full((2, 16, 24), 1500, np.uint16))
    np.testing.assert_allclose(load_episode(root).depth, 1.5, rtol=1e-6)


def test_lerobot_depth_of_another_size_is_refused_from_its_header(tmp_path: Path) -> None:
    root = lerobot_with_depth(tmp_path / "ds", np.full((2, 300, 400), 1500, np.uint16))
    message = refused(lambda: load_episode(root))
    assert message.endswith(
        "column 'observation.depth' row 0: expected a 24x16 depth PNG like the frames, found 400x300"
    )


def test_lerobot_camera_info_that_is_not_an_object(tmp_path: Path) -> None:
    """`info` of a feature is an object in LeRobot's writer; anything else means no intrinsics
    (it raised AttributeError)."""
    root = lerobot_with_images(tmp_path / "ds", np.zeros((2, 8, 8, 3), np.uint8))
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["observation.image"]["info"] = "pinhole"
    edit_info(root, features=info["features"])
    assert load_episode(root).intrinsics is None
