"""The app launched for real (`python app.py`) and driven through gradio_client."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from app_server import running_app
from conftest import translating_episode
from gradio_client import Client, handle_file

from stvla_core.episodes import save_episode

CONTROLS = (8, "lk", "episode", 5, 2)
T = 16


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("episodes")
    save_episode(translating_episode(t=T, h=64, w=80, name="right"), root / "right.npz")
    save_episode(translating_episode(t=12, h=64, w=80, dx=0.0, dy=1.0, name="down"), root / "down.npz")
    with running_app("--episodes-dir", str(root)) as url:
        yield Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def image(path: str) -> np.ndarray:
    return cv2.imread(path, cv2.IMREAD_COLOR)


def test_the_api_lists_the_inspector_endpoints(client: Client) -> None:
    names = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/select_episode", "/render", "/poll", "/upload", "/export_csv", "/export_zip"} <= set(names)


def test_select_then_step_through_an_episode(client: Client) -> None:
    out = client.predict("bundled:right.npz", *CONTROLS, api_name="/select_episode")
    assert out[0]["maximum"] == T - 1 and out[0]["value"] == 0
    a = client.predict("bundled:right.npz", 5, *CONTROLS, api_name="/render")
    b = client.predict("bundled:right.npz", 12, *CONTROLS, api_name="/render")
    assert a[0] == "" and "frame 5" in a[1] and "frame 12" in b[1]
    for k in (3, 5, 6, 7):  # overlay and the three variants, as files the browser would load
        assert image(a[k]).shape == (64, 80, 3)
    assert not np.array_equal(image(a[7]), image(b[7]))
    assert a[9].count("</tr>") == 13  # header + one row per action token
    fig = json.loads(client.predict("bundled:right.npz", 5, *CONTROLS, api_name="/plot_at")["plot"])
    assert len(fig["data"]) == 14 and fig["layout"]["shapes"][0]["x0"] == 5


def test_a_corrupt_upload_shows_its_error_and_the_app_keeps_working(client: Client, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    dropdown, message = client.predict(handle_file(str(bad)), api_name="/upload")
    assert "could not load" in message and "corrupt.npz" in message
    out = client.predict("bundled:down.npz", 3, *CONTROLS, api_name="/render")
    assert out[0] == "" and "frame 3" in out[1]


def test_export_the_actions_table(client: Client) -> None:
    path, message = client.predict("bundled:right.npz", *CONTROLS, api_name="/export_csv")
    assert message == ""
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == T and {"recorded_gripper", "predicted_gripper"} <= set(rows[0])
