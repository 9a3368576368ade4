"""Several training runs at equal budget on one GPU: the rows of a depth-input comparison.

Each row is the same recipe (a TrainConfig) with its own depth input ("none", "raw", "A", "C@7",
...), trained in its own process on the shared GPU. The pack's frames are decoded once
(`decode_frames`) and mapped by every run; with a time budget the runs agree on one step count
(`budget_group`), so every row trains the same steps on the same batches (same seed).

Leased machines return a few files of bounded size (the lent H200: 8 files of 16 MiB, 64 MiB in
all per call), so `bundle` packs the runs (exported model, metrics, summary, config, log; no
optimizer checkpoints) into xz-compressed tar parts of at most `part_bytes`, and `unbundle`
restores them: bf16 weights compress to about 70 %, so three 18 M-parameter rows need two calls'
worth of parts (the second call, on the still-warm machine, copies the remaining parts)."""

from __future__ import annotations

import io
import json
import lzma
import multiprocessing as mp
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from stvla_core.train.config import TrainConfig
from stvla_core.train.pack import FRAMES, decode_frames, parse_mode

PART_BYTES = 16_000_000
BUNDLED = ("model", "metrics.jsonl", "summary.json", "config.json", "train.log")


def row_dir(runs_root: str | Path, mode: str) -> Path:
    """The run folder of one row; "C@7" -> "C-b7" (no "@" in paths)."""
    return Path(runs_root) / mode.replace("@", "-b")


def train_rows(
    recipe: TrainConfig, modes: list[str], runs_root: str | Path, progress: Any = print
) -> list[dict[str, Any]]:
    """Train one run per depth mode in parallel processes; returns each run's summary."""
    for m in modes:
        parse_mode(m)
    if len(set(modes)) != len(modes):
        raise ValueError(f"rows: each depth mode once, found {modes}")
    root = Path(runs_root)
    root.mkdir(parents=True, exist_ok=True)
    if not (Path(recipe.pack) / FRAMES).is_file():
        t = time.time()
        decode_frames(recipe.pack, recipe.decode_workers or None)
        progress(f"decoded the pack's frames once in {time.time() - t:.1f} s")
    group = root / f".budget-{os.getpid()}-{int(time.time())}"
    procs = []
    for m in modes:
        run = row_dir(root, m)
        run.mkdir(parents=True, exist_ok=True)
        config = replace(recipe, depth_mode=m, run_dir=str(run))
        if recipe.time_budget_s > 0:
            config = replace(config, budget_group=str(group), budget_group_size=len(modes))
        config.validate()
        (run / "requested.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        log = (run / "train.log").open("w")
        cmd = [sys.executable, "-m", "stvla_core.train", "run", "--config", str(run / "requested.json")]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env())
        procs.append((m, run, proc, log))
        progress(f"row {m}: training in {run}")
    summaries = []
    for m, run, proc, log in procs:
        code = proc.wait()
        log.close()
        summary_file = run / "summary.json"
        if code != 0 or not summary_file.is_file():
            tail = (run / "train.log").read_text()[-2000:]
            raise RuntimeError(f"row {m} failed (exit code {code}); the end of its log:\n{tail}")
        summaries.append({"mode": m, **json.loads(summary_file.read_text())})
    return summaries


def _child_env() -> dict[str, str]:
    """The children import this checkout's stvla_core from any working directory."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    return env


def table(summaries: list[dict[str, Any]]) -> str:
    """Markdown: steps, time and held-out action error of each row."""
    lines = [
        "| depth input | steps | seconds | held-out loss | held-out action L1 | mean-action L1 |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        e = s.get("final_eval") or {}
        lines.append(
            f"| {s['mode']} | {s['steps']} | {s['seconds']} | {e.get('val_loss', float('nan')):.4f} "
            f"| {e.get('val_action_l1', float('nan')):.5f} | {e.get('baseline_mean_action_l1', float('nan')):.5f} |"
        )
    return "\n".join(lines)


def _compress_run(args: tuple[str, str]) -> bytes:
    run, arcroot = args
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in BUNDLED:
            path = Path(run) / name
            if path.exists():
                tar.add(path, arcname=f"{arcroot}/{name}")
    return lzma.compress(buf.getvalue(), preset=0)


def bundle(runs: list[Path], out: str | Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """The runs' results as out/part-NN.bin: one xz stream per run, concatenated, cut into parts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with mp.get_context("spawn").Pool(max(1, min(len(runs), os.cpu_count() or 1))) as pool:
        streams = pool.map(_compress_run, [(str(r), r.name) for r in runs])
    data = b"".join(streams)
    parts = []
    for i in range(0, len(data), part_bytes):
        parts.append(out / f"part-{i // part_bytes:02d}.bin")
        parts[-1].write_bytes(data[i : i + part_bytes])
    return parts


def unbundle(parts: list[Path], dest: str | Path) -> list[str]:
    """Restore `bundle`'s parts (in name order) under dest; returns the run folders restored.
    Member paths are checked to stay inside dest."""
    dest = Path(dest).resolve()
    data = lzma.decompress(b"".join(Path(p).read_bytes() for p in sorted(parts)))
    runs = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r", ignore_zeros=True) as tar:
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if dest not in target.parents:
                raise ValueError(f"bundle member {member.name!r} would leave {dest}")
            runs.add(member.name.split("/")[0])
        tar.extractall(dest, filter="data")
    return sorted(runs)


RECORDED = {
    "config.json": "train_config.json",
    "metrics.jsonl": "metrics.jsonl",
    "summary.json": "summary.json",
    "train.log": "train.log",
    "model/config.json": "model_config.json",
    "model/trace_config.json": "trace_config.json",
    "model/depth_input.json": "depth_input.json",
    "model/processor_config.json": "processor_config.json",
}


def record(run: str | Path, dest: str | Path) -> Path:
    """Everything about a row but its weights (configs, metrics, log) and a model card, in dest:
    small enough for git, so each row's training is documented where the weights cannot go."""
    import shutil

    run, dest = Path(run), Path(dest)
    missing = [name for name in RECORDED if not (run / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run} is not a finished training run: no {', '.join(missing)}")
    dest.mkdir(parents=True, exist_ok=True)
    for src, name in RECORDED.items():
        shutil.copy2(run / src, dest / name)
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    e = summary.get("final_eval") or {}
    (dest / "README.md").write_text(
        f"# Ablation row `{config['depth_mode']}`\n\n"
        f"ST-VLA-S ({summary['parameters'] / 1e6:.1f} M parameters) trained from scratch on the depth input "
        f"`{config['depth_mode']}` of the pack `{config['pack']}`: {summary['steps']} steps of batch "
        f"{config['batch_size']}, {summary['seconds']} s on {summary['device']} ({summary['precision']}), "
        f"in parallel with the other rows of its call (`python -m stvla_core.train rows`).\n\n"
        f"- loss {summary['first_loss']:.3f} -> {summary['last_loss']:.3f}; held-out loss "
        f"{e.get('val_loss', float('nan')):.4f}\n"
        f"- held-out action L1 {e.get('val_action_l1', float('nan')):.5f} against "
        f"{e.get('baseline_mean_action_l1', float('nan')):.5f} for the mean action\n"
        f"- weights: not in git (36 MB); `train_config.json` retrains them, `trace_config.json` and "
        f"`depth_input.json` say what the policy sees at inference.\n"
    )
    return dest
