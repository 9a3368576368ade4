"""Episode validation: each bad field is refused with a message naming the field, what was
expected and what was found."""

from __future__ import annotations

import numpy as np
import pytest

from stvla_core.episodes import Episode, EpisodeError

T, H, W = 3, 4, 5


def frames() -> np.ndarray:
    return np.zeros((T, H, W, 3), np.uint8)


def test_valid_episode_with_every_field() -> None:
    ep = Episode(
        frames=frames(),
        instruction="pick",
        fps=5.0,
        depth=np.ones((T, H, W), np.float32),
        segmentation=np.zeros((T, H, W), np.int32),
        segmentation_names={0: "table"},
        actions=np.zeros((T, 7), np.float32),
        intrinsics=np.eye(3, dtype=np.float32),
        extrinsics=np.tile(np.eye(4, dtype=np.float32), (T, 1, 1)),
        gt_points=np.zeros((T, 2, 2), np.float32),
        gt_visible=np.ones((T, 2), bool),
        gt_point_names=["left", "right"],
        metadata={"success": True},
    )
    assert (len(ep), ep.num_frames, ep.size) == (T, T, (H, W))
    assert ep.summary() == "episode: 3 frames 5x4, depth, segmentation, actions, intrinsics, 2 gt points"


BAD = [
    ({"frames": [[1]]}, "frames", "a numpy array", "list"),
    (
        {"frames": np.zeros((T, H, W), np.uint8)},
        "frames",
        "(T, H, W, 3) uint8 RGB",
        "shape (3, 4, 5) dtype uint8",
    ),
    ({"frames": np.zeros((T, H, W, 3), np.float32)}, "frames", "(T, H, W, 3) uint8 RGB", "dtype float32"),
    ({"frames": np.zeros((0, H, W, 3), np.uint8)}, "frames", "at least one frame", "shape (0, 4, 5, 3)"),
    ({"instruction": 3}, "instruction", "a string", "int"),
    ({"fps": 0.0}, "fps", "a finite number > 0", "0.0"),
    ({"fps": float("nan")}, "fps", "a finite number > 0", "nan"),
    ({"depth": np.ones((T, H, W + 1), np.float32)}, "depth", "shape (3, 4, 5) float32", "shape (3, 4, 6)"),
    ({"depth": np.ones((T, H, W), np.float64)}, "depth", "dtype float32", "dtype float64"),
    ({"depth": -np.ones((T, H, W), np.float32)}, "depth", "metres >= 0", "negative values"),
    ({"segmentation": np.zeros((T, H, W), np.int64)}, "segmentation", "dtype int32", "dtype int64"),
    (
        {"segmentation": np.zeros((T, H + 1, W), np.int32)},
        "segmentation",
        "shape (3, 4, 5) int32",
        "shape (3, 5, 5)",
    ),
    ({"depth": [[0.5]]}, "depth", "a numpy array (3, 4, 5)", "list"),
    ({"actions": np.zeros((T, 6), np.float32)}, "actions", "shape (3, 7) float32", "shape (3, 6)"),
    ({"actions": np.zeros((T + 1, 7), np.float32)}, "actions", "shape (3, 7) float32", "shape (4, 7)"),
    ({"actions": np.full((T, 7), np.nan, np.float32)}, "actions", "finite values", "21 NaN/inf values"),
    ({"intrinsics": np.eye(4, dtype=np.float32)}, "intrinsics", "shape (3, 3) float32", "shape (4, 4)"),
    ({"intrinsics": np.eye(3)}, "intrinsics", "dtype float32", "dtype float64"),
    ({"extrinsics": np.zeros((T + 1, 4, 4), np.float32)}, "extrinsics", "shape (3, 4, 4)", "shape (4, 4, 4)"),
    ({"extrinsics": np.zeros((3, 4), np.float32)}, "extrinsics", "shape (4, 4) float32", "shape (3, 4)"),
    (
        {"gt_points": np.zeros((T, 2, 3), np.float32), "gt_visible": np.ones((T, 2), bool)},
        "gt_points",
        "shape (3, 2, 2) float32",
        "shape (3, 2, 3)",
    ),
    (
        {"gt_points": np.zeros((T, 2, 2), np.float32), "gt_visible": np.ones((T, 2), np.uint8)},
        "gt_visible",
        "dtype bool",
        "dtype uint8",
    ),
    (
        {"gt_points": np.zeros((T, 2, 2), np.float32)},
        "gt_visible",
        "given together with gt_points",
        "only one",
    ),
    (
        {"gt_points": np.zeros((T, 2, 2), np.float32), "gt_visible": np.ones((T, 3), bool)},
        "gt_visible",
        "shape (3, 2) bool",
        "shape (3, 3)",
    ),
    (
        {
            "gt_points": np.zeros((T, 2, 2), np.float32),
            "gt_visible": np.ones((T, 2), bool),
            "gt_point_names": ["a"],
        },
        "gt_point_names",
        "2 names",
        "1",
    ),
    ({"metadata": {"when": object()}}, "metadata", "a JSON-serialisable dict", "object"),
    ({"metadata": ["a", "list"]}, "metadata", "a JSON-serialisable dict", "list"),
    ({"name": 123}, "name", "a string", "int"),
    ({"source": None}, "source", "a string", "NoneType"),
    ({"fps": True}, "fps", "a finite number > 0", "True"),
    ({"segmentation_names": ["table"]}, "segmentation_names", "a dict of int id -> str name", "list"),
    ({"segmentation_names": {"1": "cup"}}, "segmentation_names", "int id -> str name", "'1': 'cup'"),
    ({"segmentation_names": {1: 2}}, "segmentation_names", "int id -> str name", "1: 2"),
    ({"gt_point_names": "left"}, "gt_point_names", "a list of strings", "str"),
    ({"gt_point_names": ["left", 2]}, "gt_point_names", "a list of strings", "int 2"),
    ({"extrinsics": [[1.0]]}, "extrinsics", "a numpy array", "list"),
]


@pytest.mark.parametrize(
    ("changes", "field", "expected", "found"), BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_field_is_named_with_expected_and_found(
    changes: dict, field: str, expected: str, found: str
) -> None:
    kwargs = {"frames": frames(), **changes}
    with pytest.raises(EpisodeError) as info:
        Episode(**kwargs)
    message = str(info.value)
    assert f"episode field {field!r}" in message
    assert f"expected {expected}" in message
    assert found in message.split("found", 1)[1]


def test_replace_validates_the_copy() -> None:
    ep = Episode(frames=frames(), actions=np.zeros((T, 7), np.float32))
    assert ep.replace(instruction="push").instruction == "push"
    with pytest.raises(EpisodeError, match="'actions'"):
        ep.replace(frames=np.zeros((T + 2, H, W, 3), np.uint8))


def test_fps_of_the_wrong_type_is_an_episode_error() -> None:
    with pytest.raises(EpisodeError, match="'fps': expected a finite number > 0, found '10'"):
        Episode(frames=np.zeros((2, 4, 4, 3), np.uint8), fps="10")  # type: ignore[arg-type]


def test_extrinsics_may_be_one_matrix_or_one_per_frame() -> None:
    one = Episode(frames=frames(), extrinsics=np.eye(4, dtype=np.float32))
    per_frame = Episode(frames=frames(), extrinsics=np.tile(np.eye(4, dtype=np.float32), (T, 1, 1)))
    assert one.extrinsics.shape == (4, 4) and per_frame.extrinsics.shape == (T, 4, 4)


def test_nan_and_inf_depth_are_stored_as_0_the_invalid_marker() -> None:
    """Depth cameras write NaN or inf where they have no reading; the Episode keeps one marker."""
    depth = np.ones((T, H, W), np.float32)
    depth[0, 0, 0], depth[1, 2, 3], depth[2, 3, 4] = np.nan, np.inf, -np.inf
    ep = Episode(frames=frames(), depth=depth)
    assert ep.depth[0, 0, 0] == ep.depth[1, 2, 3] == ep.depth[2, 3, 4] == 0.0
    assert np.isfinite(ep.depth).all() and (ep.depth == 0).sum() == 3
    assert np.isnan(depth[0, 0, 0])  # the caller's array is not changed
