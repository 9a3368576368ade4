"""Slider latency of the inspector: answering a step over a cached episode against the naive path
(recompute the step from scratch: trace window, depth, policy, pictures), and the round trip
through the launched app (gradio_client; --browser adds chromium: slider moved -> all three
variant images replaced, measured from Playwright; and inside the page from the input event to the
pictures painted, the server's text and the step's depth-input comparison shown).

python benchmarks/bench_slider_latency.py [--episode NAME] [--moves 60] [--client] [--browser]

NAME is a bundled episode (assets/episodes/NAME.npz; default the first one)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from app import AppContext, AppSettings, Inspector  # noqa: E402
from app.cache import EpisodeRun  # noqa: E402

CONTROLS = (30, "lk", "episode", 5, 2)


def percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"{np.percentile(a, 50):>8.2f} {np.percentile(a, 95):>8.2f} {a.max():>8.2f}"


def slider_moves(n_frames: int, moves: int, seed: int = 0) -> list[int]:
    """Random jumps and single steps, as a user drags and clicks."""
    rng = np.random.default_rng(seed)
    t, out = 0, []
    for _ in range(moves):
        t = int(rng.integers(n_frames)) if rng.random() < 0.5 else min(t + 1, n_frames - 1)
        out.append(t)
    return out


def bench_handler(
    insp: Inspector, episode_id: str, moves: list[int]
) -> tuple[list[float], list[float], list[float]]:
    run = insp.run_for(episode_id, insp.view_settings(*CONTROLS))
    while not run.finished:
        time.sleep(0.05)
    cached, plot = [], []
    for t in moves:
        s = time.perf_counter()
        insp.render(episode_id, t, *CONTROLS)
        cached.append((time.perf_counter() - s) * 1000)
        s = time.perf_counter()
        insp.plot_at(episode_id, t, *CONTROLS)
        plot.append((time.perf_counter() - s) * 1000)
    naive = []
    view = insp.view_settings(*CONTROLS)
    b = insp.ctx.backends
    trace = b.trace_config(view.buffer, view.tracker, view.depth, view.max_traces, view.line_thickness)
    ep = insp.ctx.store.get(episode_id)
    for t in moves[:20]:
        s = time.perf_counter()
        fresh = EpisodeRun(("naive",), ep, b.policy_for(trace), view, insp.ctx.work_dir)
        fresh.step(t)
        naive.append((time.perf_counter() - s) * 1000)
        fresh.discard()
    return cached, plot, naive


def bench_client(episode_id: str, moves: list[int]) -> list[float]:
    from app_server import running_app
    from gradio_client import Client

    with running_app() as url:
        c = Client(url, verbose=False, download_files=False)
        c.predict(episode_id, *CONTROLS, api_name="/select_episode")
        for t in range(max(moves) + 1):  # every step once: the cache is full afterwards
            c.predict(episode_id, t, *CONTROLS, api_name="/render")
        time.sleep(3)
        out = []
        for t in moves:
            s = time.perf_counter()
            c.predict(episode_id, t, *CONTROLS, api_name="/render")
            out.append((time.perf_counter() - s) * 1000)
        return out


# In the page: from the slider's input event to all seven pictures of the step loaded, to the
# server's answer having updated the text, and to the step's depth-input comparison shown; each
# timed on its own, at the first animation frame that finds it on the page (and then paints it).
IN_PAGE_JS = """async ([t, ids]) => {
    const input = document.querySelector('#frame input[type=range]');
    const info = document.querySelector('#info');
    const before = ids.map(id => document.querySelector('#' + id + ' img').getAttribute('src'));
    const frame = () => new Promise(res => requestAnimationFrame(() => res()));
    const compared = "#compare .stvla-compare[data-step='" + t + "']:not([data-pending])";
    const checks = [
        () => ids.every((id, i) => {
            const img = document.querySelector('#' + id + ' img');
            return img.complete && img.getAttribute('src') !== before[i];
        }),
        () => info.innerText.includes('frame ' + t + ' '),
        () => !!document.querySelector(compared),
    ];
    const done = checks.map(() => null);
    const start = performance.now();
    input.value = String(t);
    input.dispatchEvent(new Event('input', {bubbles: true}));
    input.dispatchEvent(new Event('change', {bubbles: true}));
    while (done.some(d => d === null)) {
        await frame();  // what is on the page in this frame's callback is painted right after it
        const now = performance.now() - start;
        checks.forEach((check, i) => { if (done[i] === null && check()) done[i] = now; });
    }
    return done;
}"""


def bench_browser(
    label: str, moves: list[int]
) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    from app_server import running_app
    from playwright.sync_api import sync_playwright
    from test_app_browser import ALL_COMPARED_JS, ARGS, PLOT_MARKER, VARIANT_IMAGES

    from app.layout import STEP_IMAGES

    out, plot, pictures, text, compared = [], [], [], [], []
    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(url)
        page.wait_for_selector("#variant-C img", timeout=60_000)
        page.wait_for_function(ALL_COMPARED_JS, timeout=600_000)
        page.wait_for_timeout(1000)  # the browser loads every step's pictures once
        last = -1
        for t in moves:
            if t == last:
                continue
            pic, txt, cmp = page.evaluate(IN_PAGE_JS, [t, list(STEP_IMAGES)])
            pictures.append(pic)
            text.append(txt)
            compared.append(cmp)
            page.wait_for_timeout(100)  # a user's next move
            last = t
        last = -1
        for t in moves:
            if t == last:
                continue
            before = [page.locator(s).get_attribute("src") for s in VARIANT_IMAGES]
            mark = page.locator(PLOT_MARKER).first.get_attribute("d")
            s = time.perf_counter()
            page.locator("#frame input[type=range]").fill(str(t))
            page.wait_for_function(
                """([sels, before]) => sels.every((s, i) => {
                    const img = document.querySelector(s);
                    return img && img.complete && img.getAttribute('src') !== before[i];
                })""",
                arg=[VARIANT_IMAGES, before],
                polling="raf",
            )
            out.append((time.perf_counter() - s) * 1000)
            page.wait_for_function(
                "([sel, d]) => document.querySelector(sel)?.getAttribute('d') !== d",
                arg=[PLOT_MARKER, mark],
                polling="raf",
            )
            plot.append((time.perf_counter() - s) * 1000)
            last = t
        browser.close()
    return out, plot, pictures, text, compared


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episode")
    ap.add_argument("--moves", type=int, default=60)
    ap.add_argument("--client", action="store_true", help="also the round trip through the launched app")
    ap.add_argument("--browser", action="store_true", help="also chromium: slider -> new images shown")
    args = ap.parse_args()
    # the policy the launched app runs (tests/app_server.py), as the header line says
    ctx = AppContext.create(AppSettings(policy=os.environ.get("STVLA_POLICY", "tiny")))
    insp = Inspector(ctx)
    choices = insp.episode_choices()
    if not choices:
        sys.exit("no bundled episodes in assets/episodes")
    label, episode_id = next((c for c in choices if c[0] == args.episode), choices[0])
    ep = ctx.store.get(episode_id)
    moves = slider_moves(ep.num_frames, args.moves)
    print(
        f"episode {label}: {ep.num_frames} frames {ep.size[1]}x{ep.size[0]}; b=30, lk, episode depth, "
        f"policy {ctx.settings.policy}"
    )
    print(f"{'path':<52} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    try:
        cached, plot, naive = bench_handler(insp, episode_id, moves)
    finally:
        ctx.close()
    print(f"{'handler, naive (recompute the step from scratch)':<52} {percentiles(naive)}")
    print(f"{'handler, cached episode: pictures, text, tokens':<52} {percentiles(cached)}")
    print(f"{'handler, cached episode: action chart with marker':<52} {percentiles(plot)}")
    if args.client:
        print(
            f"{'round trip, gradio_client -> app (cached)':<52} {percentiles(bench_client(episode_id, moves))}"
        )
    if args.browser:
        images, plot, pictures, text, compared = bench_browser(label, moves)
        print(f"{'chromium (playwright fill): -> 3 new variant images':<52} {percentiles(images)}")
        print(f"{'chromium (playwright fill): -> plot marker moved':<52} {percentiles(plot)}")
        print(f"{'chromium in page: input event -> 7 pictures painted':<52} {percentiles(pictures)}")
        print(f"{'chromium in page: input event -> server text shown':<52} {percentiles(text)}")
        print(f"{'chromium in page: input event -> depth inputs compared':<52} {percentiles(compared)}")
        lag = [c - p for c, p in zip(compared, pictures, strict=True)]
        print(f"{'chromium in page: comparison later than pictures by':<52} {percentiles(lag)}")


if __name__ == "__main__":
    main()
