"""Render the bundled sample episodes (assets/episodes/*.npz) with ManiSkill3.

Each episode is a demonstration of the scripted Panda expert (`stvla_core.sim.expert`) in the task
setup closed-loop evaluation and the shipped ST-VLA-S policy use (`stvla_core.sim.tasks`: one fixed
224x224 camera looking at the table from the front-right, `pd_ee_target_delta_pose` at 10 Hz).
Per frame it keeps RGB, ground-truth depth (metres), segmentation (actor/link ids with their
names), the actions sent, and the projected positions of four gripper points as tracking ground
truth. Seeds come from the held-out range (`SAMPLE_SEED_START` + 1..4): no training demonstration
and no evaluation episode shares them, so the Inspector shows the policy on scenes it never saw.

Needs a Vulkan device: on a CPU-only machine Mesa's lavapipe >= 24.3 (bookworm-backports
`mesa-vulkan-drivers`); `VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json` picks it when
several drivers are installed. Deterministic for given seeds (CPU physics, fixed script).

    python scripts/make_sample_episodes.py --out assets/episodes --tasks pick stack push pull
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stvla_core.episodes import Episode, save_episode  # noqa: E402
from stvla_core.sim.expert import SHORT_NAMES, Recorder  # noqa: E402

SAMPLE_SEED_START = 900_000  # above the evaluation seeds, which start at 100000
TASKS = {name: SAMPLE_SEED_START + i for i, name in enumerate(("pick", "stack", "push", "pull"), 1)}


def record(task: str, seed: int | None = None, size: int = 224, max_frames: int = 120) -> Episode:
    """The task's scripted demonstration as an Episode named maniskill_<task>. With the full
    frame budget the demonstration must succeed; a smaller `max_frames` cuts it short (metadata
    says so)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, found {task!r}")
    seed = TASKS[task] if seed is None else seed
    with Recorder(SHORT_NAMES[task], image_size=size, max_frames=max_frames) as rec:
        ep = rec.record(seed, name=f"maniskill_{task}")
    if not ep.metadata["truncated"] and not ep.metadata["success"]:
        raise RuntimeError(f"{SHORT_NAMES[task]} seed {seed}: the scripted demonstration did not succeed")
    return ep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "assets" / "episodes", help="output folder")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), help="tasks to render")
    p.add_argument("--seed", type=int, default=None, help="env seed (default: each task's own)")
    p.add_argument("--size", type=int, default=224, help="square camera size in pixels")
    p.add_argument("--max-frames", type=int, default=120, help="cut the demonstration short here")
    args = p.parse_args(argv)
    if args.max_frames < 2:
        p.error(f"--max-frames must be >= 2, found {args.max_frames}")
    for task in args.tasks:
        t0 = time.perf_counter()
        ep = record(task, args.seed, args.size, args.max_frames)
        path = save_episode(ep, args.out / f"{ep.name}.npz")
        print(
            f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.0f} s): "
            f"{ep.summary()}; seed {ep.metadata['seed']}, success {ep.metadata['success']}"
            f"{' (cut short)' if ep.metadata['truncated'] else ''}, TCP visible in "
            f"{int(ep.gt_visible[:, 1].sum())}/{ep.num_frames} frames"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
