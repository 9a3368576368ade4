"""Real browser: Debian's chromium driven by Playwright against the app launched by `app.py` on the
bundled episodes. Screenshots go to test-artifacts/ (git-ignored)."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_server import BUNDLED, REPO, running_app
from conftest import translating_episode

from stvla_core.episodes import save_episode

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
TIMEOUT_MS = 60_000
VARIANT_IMAGES = ["#variant-A img", "#variant-B img", "#variant-C img"]
PLOT_MARKER = "#actions .shapelayer path"


@pytest.fixture(scope="module")
def served():
    """(browser, URL of the app)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    if not sorted(BUNDLED.glob("*.npz")):
        pytest.skip("no bundled episodes in assets/episodes")
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app() as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser, url
        browser.close()


def open_page(browser, url: str):
    """A page in a browser context of its own: its own cookies, so its own Gradio session."""
    pg = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(url)
    return pg


@pytest.fixture(scope="module")
def page(served):
    return open_page(*served)


def sources(page) -> list[str]:
    return [page.locator(s).first.get_attribute("src") or "" for s in VARIANT_IMAGES]


def wait_for_new_images(page, before: list[str]) -> list[str]:
    """Wait until every variant image and the plot's step marker have been replaced."""
    page.wait_for_function(
        """([sels, before]) => sels.every((s, i) => {
            const img = document.querySelector(s);
            return img && img.getAttribute('src') && img.getAttribute('src') !== before[i];
        })""",
        arg=[VARIANT_IMAGES, before],
    )
    return sources(page)


def marker(page) -> str:
    page.wait_for_selector(PLOT_MARKER, state="attached")
    return page.locator(PLOT_MARKER).first.get_attribute("d") or ""


def move_slider(page, value: int) -> None:
    page.locator("#frame input[type=range]").fill(str(value))


def test_select_an_episode_step_it_and_survive_a_corrupt_upload(page, tmp_path: Path) -> None:
    # the app opens on the first bundled episode
    for s in VARIANT_IMAGES:
        page.wait_for_selector(s)
    page.wait_for_selector("#actions .js-plotly-plot")
    page.screenshot(path=str(ARTIFACTS / "inspector-open.png"), full_page=True)

    # choose another sample episode from the dropdown
    names = sorted(p.stem for p in BUNDLED.glob("*.npz"))
    target = names[1] if len(names) > 1 else names[0]
    before = sources(page)
    page.locator("#episode input").click()
    page.get_by_role("option", name=target, exact=True).click()
    page.wait_for_function("name => document.querySelector('#info')?.innerText.includes(name)", arg=target)
    after_select = wait_for_new_images(page, before) if target != names[0] else sources(page)
    assert all(after_select)
    page.wait_for_function(
        "() => document.querySelector('#progress')?.innerText.includes('all steps cached')"
    )

    # move the slider: the three variants and the action plot's step marker change
    mark0 = marker(page)
    move_slider(page, 12)
    page.wait_for_function("() => document.querySelector('#info')?.innerText.includes('frame 12')")
    after_step = wait_for_new_images(page, after_select)
    assert len(set(after_step)) == 3
    page.wait_for_function(
        "([sel, d]) => document.querySelector(sel)?.getAttribute('d') !== d", arg=[PLOT_MARKER, mark0]
    )
    page.screenshot(path=str(ARTIFACTS / "inspector-step12.png"), full_page=True)

    # a corrupt upload shows its error; the app keeps working
    bad = tmp_path / "corrupt_episode.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not an episode")
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    error = page.locator(".stvla-error")
    error.wait_for()
    assert "corrupt_episode.npz" in error.inner_text()
    page.screenshot(path=str(ARTIFACTS / "inspector-corrupt-upload.png"), full_page=True)
    move_slider(page, 20)
    page.wait_for_function("() => document.querySelector('#info')?.innerText.includes('frame 20')")
    wait_for_new_images(page, after_step)
    page.locator("#variant-C").screenshot(path=str(ARTIFACTS / "variant-C-step20.png"))


SWAP_ON_INPUT_JS = """(t) => {
    const input = document.querySelector('#frame input[type=range]');
    input.value = String(t);
    input.dispatchEvent(new Event('input', {bubbles: true}));
    return document.querySelector('#variant-C img').getAttribute('src');  // before any answer
}"""


def test_once_cached_the_browser_swaps_each_steps_pictures_itself(page) -> None:
    page.wait_for_function("() => document.querySelector('#progress .stvla-progress')?.dataset.dir")
    run_dir = page.evaluate("() => document.querySelector('#progress .stvla-progress').dataset.dir")
    assert run_dir.endswith("/") and "/frames/run-" in run_dir
    for t in (7, 8, 25):
        move_slider(page, t)
        page.wait_for_function(f"() => document.querySelector('#info')?.innerText.includes('frame {t} ')")
        page.wait_for_timeout(300)  # the server's answer has landed: it must not replace the pictures
        for src, v in zip(sources(page), "ABC", strict=True):
            assert src.endswith(f"/gradio_api/file={run_dir}{t:05d}_{v}.png"), src
    # the swap happens in the input event itself, before Gradio or the server are involved
    assert page.evaluate(SWAP_ON_INPUT_JS, 30).endswith(f"{run_dir}00030_C.png")
    page.wait_for_function("() => document.querySelector('#info')?.innerText.includes('frame 30 ')")
    # new settings: their pictures come from the server until their own run is cached
    before = sources(page)
    page.locator("#k input[type=range]").fill("3")
    page.wait_for_function(
        "dir => !document.querySelector('#variant-C img').getAttribute('src').includes(dir)", arg=run_dir
    )
    assert sources(page)[2].endswith("00030_C.png") and sources(page) != before
    page.wait_for_function(
        "dir => { const d = document.querySelector('#progress .stvla-progress')?.dataset.dir;"
        " return d && d !== dir; }",
        arg=run_dir,
    )
    move_slider(page, 31)
    page.wait_for_function("() => document.querySelector('#info')?.innerText.includes('frame 31 ')")
    new_dir = page.evaluate("() => document.querySelector('#progress .stvla-progress').dataset.dir")
    assert sources(page)[2].endswith(f"{new_dir}00031_C.png")
    page.locator("#k input[type=range]").fill("5")  # back to the settings of the other tests


def test_play_advances_the_frame_and_pause_stops_it(page) -> None:
    move_slider(page, 0)
    page.wait_for_function("() => document.querySelector('#info')?.innerText.includes('frame 0 ')")
    page.locator("#play").click()
    page.wait_for_function("() => /frame ([3-9]|\\d\\d+) /.test(document.querySelector('#info')?.innerText)")
    page.locator("#play").click()
    page.wait_for_function("() => document.querySelector('#play')?.innerText.includes('Play')")
    page.wait_for_timeout(500)  # let a tick already in flight land
    frame = page.locator("#frame input[type=number]").input_value()
    page.wait_for_timeout(600)  # several play intervals: a running player would have moved on
    assert page.locator("#frame input[type=number]").input_value() == frame


def dropdown_options(pg) -> list[str]:
    pg.locator("#episode input").click()
    pg.get_by_role("option").first.wait_for()
    names = [o.inner_text().strip().splitlines()[-1] for o in pg.get_by_role("option").all()]  # no ✓
    pg.keyboard.press("Escape")
    return names


def test_an_upload_is_listed_and_shown_only_in_the_page_that_made_it(served, tmp_path: Path) -> None:
    save_episode(translating_episode(name="my_upload"), tmp_path / "my_upload.npz")
    a, b = open_page(*served), open_page(*served)
    for pg in (a, b):
        pg.wait_for_selector("#variant-C img")
    a.locator("#upload input[type=file]").set_input_files(str(tmp_path / "my_upload.npz"))
    a.wait_for_function("() => document.querySelector('#info')?.innerText.includes('my_upload')")
    bundled = sorted(p.stem for p in BUNDLED.glob("*.npz"))
    assert dropdown_options(a) == [*bundled, "my_upload (uploaded)"]
    assert dropdown_options(b) == bundled
    b.reload()  # a new page load is a new session: still nothing of a's
    b.wait_for_selector("#variant-C img")
    assert dropdown_options(b) == bundled
    a.screenshot(path=str(ARTIFACTS / "inspector-own-upload.png"), full_page=True)
    for pg in (a, b):
        pg.context.close()


COMPARED = "#compare .stvla-compare[data-step='{t}']:not([data-pending])"


def test_the_variant_comparison_appears_and_follows_the_step(page) -> None:
    move_slider(page, 4)
    page.wait_for_function("() => document.querySelector('#info')?.innerText.includes('frame 4 ')")
    page.wait_for_selector(COMPARED.format(t=4))
    rows = page.locator("#compare .stvla-compare-actions tr[data-mode]")
    assert [r.get_attribute("data-mode") for r in rows.all()] == ["model", "raw", "A", "B", "C"]
    assert "closest" in page.locator("#compare").inner_text()
    page.wait_for_selector("#errors-plot .js-plotly-plot")
    page.wait_for_selector("#variant-errors table")
    page.locator("#compare").screenshot(path=str(ARTIFACTS / "variant-comparison-step4.png"))
    move_slider(page, 9)
    page.wait_for_selector(COMPARED.format(t=9))
    assert page.locator("#compare .stvla-compare").get_attribute("data-step") == "9"
    page.screenshot(path=str(ARTIFACTS / "variant-comparison-step9.png"), full_page=True)


# Every step cached and compared, and the browser holding every step's comparison (STEPPING_JS).
ALL_COMPARED_JS = """() => {
    const p = document.querySelector('#progress .stvla-progress');
    const c = window.stvlaCompares;
    return !!(p && p.innerText.includes('all steps cached') && p.dataset.compared
        && c && c.dir === p.dataset.dir && c.loaded === Number(p.dataset.steps));
}"""
SHOW_COMPARE_ON_INPUT_JS = """async (t) => {
    const input = document.querySelector('#frame input[type=range]');
    input.value = String(t);
    input.dispatchEvent(new Event('input', {bubbles: true}));
    await Promise.resolve();  // the component redraws in a microtask; no answer can land before it
    return document.querySelector('#compare .stvla-compare')?.dataset.step;
}"""


def test_once_compared_the_browser_shows_each_steps_comparison_itself(page) -> None:
    page.wait_for_function(ALL_COMPARED_JS, timeout=600_000)
    for t in (6, 7, 21, 2):
        assert page.evaluate(SHOW_COMPARE_ON_INPUT_JS, t) == str(t)
        page.wait_for_function(f"() => document.querySelector('#info')?.innerText.includes('frame {t} ')")
        page.wait_for_timeout(300)  # the server's answer has landed: the comparison is still step t's
        shown = page.locator("#compare .stvla-compare")
        assert shown.get_attribute("data-step") == str(t) and shown.get_attribute("data-pending") is None
        rows = page.locator("#compare .stvla-compare-actions tr[data-mode]")
        assert [r.get_attribute("data-mode") for r in rows.all()] == ["model", "raw", "A", "B", "C"]
    page.locator("#compare").screenshot(path=str(ARTIFACTS / "variant-comparison-step2-in-browser.png"))


def test_episode_3_of_an_uploaded_lerobot_zip(served, tmp_path: Path) -> None:
    from episode_fixtures import make_lerobot_v30, zip_dataset

    root = make_lerobot_v30(tmp_path / "shelf_demos", codec="libx264", lengths=(4, 6, 5, 7), depth=True)
    archive = zip_dataset(root, tmp_path / "shelf_demos.zip", from_inside=True)
    pg = open_page(*served)
    pg.wait_for_selector("#variant-C img")
    pg.locator("#upload input[type=file]").set_input_files(str(archive))
    pg.wait_for_function("() => document.querySelector('#info')?.innerText.includes('shelf_demos_episode_0')")
    pg.wait_for_selector("#dataset-episode input")
    assert "4 episodes" in pg.locator("#dataset-info").inner_text()
    pg.locator("#dataset-episode input").click()
    pg.get_by_role("option", name="3: 7 frames", exact=False).click()
    pg.wait_for_function("() => document.querySelector('#info')?.innerText.includes('shelf_demos_episode_3')")
    assert "frame 0 of 6" in pg.locator("#info").inner_text()
    pg.wait_for_selector(COMPARED.format(t=0))
    move_slider(pg, 5)
    pg.wait_for_selector(COMPARED.format(t=5))
    pg.screenshot(path=str(ARTIFACTS / "inspector-lerobot-episode3.png"), full_page=True)
    pg.context.close()
