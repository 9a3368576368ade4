"""Datasets, not just episodes: a multi-episode LeRobot dataset (v2.1 or v3.0, zipped either way,
or a local folder) is listed from its metadata, each episode decoded when picked, under the
dataset's real name; the size limit applies to what one episode reads and decodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import translating_episode
from episode_fixtures import CAMERAS, TASKS, make_lerobot_v21, make_lerobot_v30, zip_dataset

from app import AppContext, AppSettings, Inspector
from app.episodes import EpisodeStore, split_dataset_id, unpack_zip
from stvla_core.episodes import EpisodeError, save_episode
from stvla_core.episodes.formats.lerobot import list_lerobot

LENGTHS = (4, 6, 5, 7)  # four episodes: episode 3 exists
TOP, WRIST = list(CAMERAS)
CONTROLS = (4, "lk", "episode", 5, 2)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    return {
        "v2.1": make_lerobot_v21(root / "pick_v21", lengths=LENGTHS, depth=True),
        "v3.0": make_lerobot_v30(root / "pick_v30", codec="libx264", lengths=LENGTHS, depth=True),
    }


@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    forgotten: list[str] = []
    s = EpisodeStore(tmp_path / "none", max_upload_bytes=10**8, unpack_dir=tmp_path / "unpacked")
    s.on_forget = forgotten.extend
    s.forgotten = forgotten  # type: ignore[attr-defined]
    return s


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_a_listing_reads_only_the_metadata(datasets: dict[str, Path], version: str) -> None:
    listing = list_lerobot(datasets[version])
    assert listing.codebase_version == version and listing.cameras == (TOP, WRIST)
    assert [(e.index, e.length) for e in listing.episodes] == list(enumerate(LENGTHS))
    assert [e.tasks for e in listing.episodes] == [(TASKS[i % len(TASKS)],) for i in range(4)]


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
@pytest.mark.parametrize("from_inside", [False, True])
def test_a_zipped_dataset_loads_each_episode_by_choice_with_its_real_name(
    datasets: dict[str, Path], store: EpisodeStore, tmp_path: Path, version: str, from_inside: bool
) -> None:
    src = datasets[version]
    archive = zip_dataset(src, tmp_path / f"{src.name}.zip", from_inside)
    first = store.upload(archive)
    # zipped from inside the folder, the archive's name stands in for the folder's
    name = src.name
    dataset_id, index, camera = split_dataset_id(first)
    assert (index, camera) == (0, TOP)
    d = store.dataset(first)
    assert d is not None and d.listing.name == name and not d.loaded  # nothing decoded yet
    assert store.choices() == [(f"{name}: episode 0, {TOP} (uploaded dataset of 4)", first)]
    assert "4 episodes" in d.describe() and "4–7 frames each" in d.describe()
    ep0 = store.get(first)
    assert ep0.name == f"{name}_episode_0" and ep0.num_frames == 4 and ep0.depth is not None
    third = store.pick(first, 3, WRIST)
    assert split_dataset_id(third) == (dataset_id, 3, WRIST)
    ep3 = store.get(third)
    assert ep3.name == f"{name}_episode_3" and ep3.num_frames == 7
    assert abs(int(ep3.frames[0, 0, 0, 1]) - (40 + 60 * 3)) <= 3  # green encodes the episode
    assert ep3.frames[0, 0, 0, 2] > 200  # the wrist camera's bright channel
    np.testing.assert_allclose(ep3.actions[:, 0], 3.0)
    assert store.get(third) is ep3  # decoded once
    assert store.choices()[0] == (f"{name}: episode 3, {WRIST} (uploaded dataset of 4)", third)
    with pytest.raises(EpisodeError, match=r"has no episode 4; it has episodes 0\.\.3"):
        store.pick(first, 4, TOP)
    with pytest.raises(EpisodeError, match=r"has no camera 'side'; expected one of observation"):
        store.pick(first, 1, "side")
    # forgetting the dataset deletes its unpacked files and tells the caches
    unpacked = d.owned
    assert unpacked is not None and unpacked.is_dir()
    store.end_session("")
    assert not unpacked.exists() and store.forgotten == [dataset_id]  # type: ignore[attr-defined]


def test_the_size_limit_applies_to_one_episode_not_the_whole_dataset(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    src = datasets["v2.1"]
    total = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
    episode_files = [src / "data/chunk-000/episode_000000.parquet"]
    episode_files += [src / f"videos/chunk-000/{TOP}/episode_000000.mp4"]
    one = sum(f.stat().st_size for f in episode_files)
    store = EpisodeStore(tmp_path / "none", max_upload_bytes=one + 1, unpack_dir=tmp_path / "u")
    assert total > one + 1
    first = store.upload(zip_dataset(src, tmp_path / "ds.zip", from_inside=False))
    assert store.get(first).num_frames == 4  # the dataset is larger than the limit, episode 0 is not
    with pytest.raises(EpisodeError, match="over the limit of"):
        store.get(store.pick(first, 3, TOP))  # a longer episode reads more than the limit


def test_unpacking_is_guarded_by_its_own_size_limit(tmp_path: Path) -> None:
    import zipfile

    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("f/zeros.png", bytes(2 * 10**6))
    with pytest.raises(EpisodeError, match="unpacks to 2000000 bytes, over the limit of 1000000"):
        unpack_zip(big, tmp_path / "out", 10**6)


def test_the_inspector_picks_dataset_episodes_and_opens_local_paths(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "bundled").mkdir()
    ctx = AppContext.create(AppSettings(episodes_dir=str(tmp_path / "bundled"), policy="tiny"))
    try:
        insp = Inspector(ctx)
        dropdown, message = insp.open_path(str(datasets["v3.0"]), session="s")
        assert message == "" and dropdown.value.endswith(f"|0|{TOP}")
        picker, cams, info = insp.dataset_controls(dropdown.value, session="s")
        assert picker.visible and [c[1] for c in picker.choices] == [0, 1, 2, 3] and picker.value == 0
        assert picker.choices[3][0] == f"3: 7 frames · {TASKS[0]}"
        assert [c[0] for c in cams.choices] == [TOP, WRIST] and "**pick_v30**" in info["value"]
        picked, message = insp.pick_episode(dropdown.value, 3, TOP, session="s")
        assert message == "" and picked.value.endswith(f"|3|{TOP}")
        out = insp.select_episode(picked.value, *CONTROLS, session="s")
        assert out[0].maximum == 6 and "**pick_v30_episode_3**" in out[2] and out[1] == ""
        run = insp.run_for(picked.value, insp.view_settings(*CONTROLS), session="s")
        assert run.compare(2).html.count("data-mode=") == 5  # the variant comparison, on an upload
        assert insp.dataset_controls("bundled:x.npz", session="s")[0]["visible"] is False
        assert insp.dataset_controls(picked.value, session="other")[0]["visible"] is False
        # a plain episode file from a path
        save_episode(translating_episode(t=5, h=48, w=64, name="local"), tmp_path / "local.npz")
        dropdown, message = insp.open_path(str(tmp_path / "local.npz"), session="s")
        assert message == "" and ctx.store.get(dropdown.value, "s").name == "local"
        _, message = insp.open_path(str(tmp_path / "missing"), session="s")
        assert "does not exist" in message
    finally:
        ctx.close()
