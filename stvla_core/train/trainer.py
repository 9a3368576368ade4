"""Full training of ST-VLA-S from scratch on a training pack (`stvla_core.train.pack`).

The same SpatialVLA classes and the same prefix-LM loss as fine-tuning (`stvla_core.finetune`):
prompt bidirectional, action tokens causal, cross-entropy on the 3k action tokens only. The whole
pack sits on the device (uint8 frames, pooled depth, token targets), so a step is one gather and
one forward/backward: nothing waits on data loading after the start. bf16 autocast with fp32
weights on a GPU, fp32 on the CPU.

Run folder:
    config.json           the run's TrainConfig
    processor/            processor_config.json with the action grid fitted to the pack's actions
    metrics.jsonl         train rows (step, loss, accuracy, lr, samples/s) and eval rows (held-out
                          loss, action L1 of the model and of the mean-action baseline)
    checkpoints/step_N/   model.safetensors + optimizer.pt + state.json + COMPLETE (atomic rename)
    model/                the final weights (bf16, shards of <= 15 MiB) + processor: a checkpoint
                          folder `Policy.from_pretrained` loads
    summary.json          written last
Resume takes the newest checkpoint with COMPLETE; batches depend only on (seed, step)."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stvla_core.finetune.trainer import Batch, action_logits
from stvla_core.jobs.files import atomic_write_text
from stvla_core.model.configuration_spatialvla import stvla_s_config
from stvla_core.model.modeling_spatialvla import SpatialVLAForConditionalGeneration
from stvla_core.model.processing_spatialvla import SpatialVLAProcessor, scale_intrinsics
from stvla_core.policy import DEPTH_INPUT_FILE, TRACE_FILE
from stvla_core.runs import COMPLETE, complete_checkpoints, locked_run_dir, read_metrics
from stvla_core.traces import VARIANTS
from stvla_core.train.config import TrainConfig
from stvla_core.train.grid import write_processor_config
from stvla_core.train.pack import Pack, load_pack, parse_mode

SHARD_BYTES = 15 * 2**20
Progress = Callable[[str], None]


@dataclass
class DeviceData:
    """The pack on the training device."""

    frames: torch.Tensor  # (N, S, S, 3) uint8
    depth: torch.Tensor  # (N, 1, g, g) float32 metres
    targets: torch.Tensor  # (N, 3k) int64 action tokens of the chunk starting at each frame
    ids: torch.Tensor  # (N, L) int64 prompt + targets, left-padded
    pad: torch.Tensor  # (N,) int64 padding length of each row
    intrinsics: torch.Tensor  # (3, 3) float32, in pixels of the model input
    actions: np.ndarray  # (N, 7) recorded action at each frame (dataset units)


def chunk_indices(episode: np.ndarray, k: int) -> np.ndarray:
    """(N,) episode id per frame (episodes contiguous) -> (N, k) frame indices of the chunk that
    starts at each frame, the episode's last frame repeated past its end."""
    n = len(episode)
    idx = np.arange(n)[:, None] + np.arange(k)[None]
    last = np.zeros(n, np.int64)
    ends = np.flatnonzero(np.r_[episode[1:] != episode[:-1], True])
    starts = np.r_[0, ends[:-1] + 1]
    for s, e in zip(starts, ends, strict=True):
        last[s : e + 1] = e
    return np.minimum(idx, last[:, None])


def to_device(
    pack: Pack, processor: SpatialVLAProcessor, config: TrainConfig, device: torch.device
) -> DeviceData:
    s = processor.image_size
    frames = pack.frames
    if frames.shape[1:3] != (s, s):
        raise ValueError(
            f"pack frames are {frames.shape[1:3]}, the model takes {s}x{s}; make the pack at that size"
        )
    stats = processor.stats(config.unnorm_key)
    chunks = pack.actions[chunk_indices(pack.episode, processor.action_chunk_size)]  # (N, k, 7)
    n, k = chunks.shape[:2]
    targets = processor.action_tokenizer.encode(stats.normalize(chunks.reshape(-1, 7).astype(np.float64)))
    targets = targets.reshape(n, 3 * k)
    prompts = {e["task"]: processor.prompt_ids(e["task"]) for e in pack.meta["episodes"]}
    task_of = [pack.meta["episodes"][i]["task"] for i in pack.episode]
    length = max(len(p) for p in prompts.values()) + 3 * k
    pad_id = 0 if processor.image_token_id != 0 else 1
    ids = np.full((n, length), pad_id, np.int64)
    pad = np.zeros(n, np.int64)
    for i in range(n):
        p = prompts[task_of[i]]
        pad[i] = length - len(p) - 3 * k
        ids[i, pad[i] :] = np.r_[p, targets[i]]
    k_model = scale_intrinsics(
        np.asarray(pack.meta["intrinsics"], np.float64), tuple(pack.meta["frame_hw"]), (s, s)
    )
    return DeviceData(
        torch.from_numpy(frames).to(device),
        torch.from_numpy(pack.depth[config.depth_mode]).unsqueeze(1).to(device),
        torch.from_numpy(targets).to(device),
        torch.from_numpy(ids).to(device),
        torch.from_numpy(pad).to(device),
        torch.as_tensor(k_model, dtype=torch.float32, device=device),
        pack.actions,
    )


def make_batch(data: DeviceData, idx: torch.Tensor) -> Batch:
    """The prefix-LM batch of frames `idx` (the mask of `stvla_core.finetune.trainer.make_batch`,
    built on the device for rows that share one padded length)."""
    ids = data.ids[idx]
    b, length = ids.shape
    n_act = data.targets.shape[1]
    act = length - n_act
    pad = data.pad[idx][:, None, None]
    col = torch.arange(length, device=ids.device)[None, None, :]
    row = torch.arange(length, device=ids.device)[None, :, None]
    allowed = ((col >= pad) & (col < act)) | ((col >= act) & (col <= row))
    positions = (torch.arange(length, device=ids.device)[None] - data.pad[idx][:, None] + 1).clamp(min=1)
    pixels = data.frames[idx].permute(0, 3, 1, 2).float() / 255.0
    return Batch(
        ids,
        positions,
        allowed[:, None],
        data.targets[idx],
        pixels,
        data.intrinsics.expand(b, 3, 3),
        data.depth[idx],
    )


def shift_images(
    pixels: torch.Tensor, depth: torch.Tensor, max_shift: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random translation augmentation (DrQ's pad-and-crop): (B, 3, S, S) pixels moved by up to
    `max_shift` pixels per axis, edges repeated; the (B, 1, g, g) pooled depth moved by the same
    offset in grid cells (rounded), so image and depth stay aligned to within half a cell."""
    b, _, s, _ = pixels.shape
    g = depth.shape[-1]
    shift = torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator).to(pixels.device)

    def move(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        grid = torch.arange(n, device=x.device)
        rows = (grid[None] - dy[:, None]).clamp(0, n - 1)  # (B, n): source row of each output row
        cols = (grid[None] - dx[:, None]).clamp(0, n - 1)
        batch = torch.arange(b, device=x.device)[:, None, None]
        return x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    cells = torch.round(shift.float() * g / s).long()
    return move(pixels, shift[0], shift[1]), move(depth, cells[0], cells[1])


def lr_at(config: TrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.min_lr_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The batch of a step depends only on (seed, step), so a resumed run sees the same batches."""
    return np.random.default_rng([seed, step]).choice(n, size=batch_size, replace=n < batch_size)


def constrained_argmax(logits: torch.Tensor, ranges: list[tuple[int, int]]) -> torch.Tensor:
    """(B, 3k, V) -> (B, 3k): the best token among those valid at each position, as generation picks."""
    out = torch.empty(logits.shape[:2], dtype=torch.long, device=logits.device)
    for j in range(logits.shape[1]):
        lo, hi = ranges[j % len(ranges)]
        out[:, j] = logits[:, j, lo:hi].argmax(-1) + lo
    return out


@torch.no_grad()
def evaluate(
    model: SpatialVLAForConditionalGeneration,
    data: DeviceData,
    processor: SpatialVLAProcessor,
    idx: np.ndarray,
    mean_action: np.ndarray,
    config: TrainConfig,
    autocast: Any,
) -> dict[str, float]:
    """Held-out loss and the L1 error (dataset units, mean over the 7 dimensions) of the first
    predicted action, teacher-forced with constrained argmax, against the recorded action; and the
    same error of always predicting the mean training action."""
    model.eval()
    losses, preds = [], []
    ranges = processor.action_tokenizer.ranges()
    for start in range(0, len(idx), config.batch_size):
        sel = torch.as_tensor(idx[start : start + config.batch_size], device=data.ids.device)
        batch = make_batch(data, sel)
        with autocast():
            logits = action_logits(model, batch)
        losses.append(
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1)).item() * len(sel)
        )
        tokens = constrained_argmax(logits, ranges)[:, :3].cpu().numpy()
        preds += [processor.decode_actions(t, config.unnorm_key).actions[0] for t in tokens]
    model.train()
    truth = data.actions[idx]
    pred = np.stack(preds)
    return {
        "val_loss": float(np.sum(losses) / len(idx)),
        "val_action_l1": float(np.abs(pred - truth).mean()),
        "val_action_l1_per_dim": np.abs(pred - truth).mean(0).round(6).tolist(),
        "val_gripper_accuracy": float(((pred[:, 6] > 0.5) == (truth[:, 6] > 0.5)).mean()),
        "baseline_mean_action_l1": float(np.abs(mean_action[None] - truth).mean()),
    }


def agree_on_steps(config: TrainConfig, steps: int, progress: Progress, timeout_s: float = 300) -> int:
    """Runs of one budget group (sharing a GPU) each post the steps their time budget allows and
    all take the smallest, so every row of a comparison trains the same number of steps."""
    group = Path(config.budget_group)
    group.mkdir(parents=True, exist_ok=True)
    atomic_write_text(group / f"{Path(config.run_dir).name}.steps", f"{steps}\n")
    deadline = time.time() + timeout_s
    while True:
        posted = sorted(group.glob("*.steps"))
        if len(posted) >= config.budget_group_size:
            agreed = min(int(f.read_text()) for f in posted)
            progress(f"budget group {group.name}: {len(posted)} runs, training {agreed} steps each")
            return agreed
        if time.time() > deadline:
            raise TimeoutError(
                f"budget group {group}: {len(posted)} of {config.budget_group_size} runs posted their steps"
            )
        time.sleep(0.5)


# -- run folder ------------------------------------------------------------------------------
def save_checkpoint(
    run_dir: Path, step: int, model: SpatialVLAForConditionalGeneration, opt: torch.optim.Optimizer
) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / f"step_{step:06d}", root / f".tmp-step_{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step}) + "\n")
    (tmp / COMPLETE).write_text(f"{step}\n")
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    for old in complete_checkpoints(run_dir)[:-2]:  # keep the newest two
        shutil.rmtree(old, ignore_errors=True)
    return final


_RESUMABLE = {
    "steps",
    "checkpoint_every",
    "log_every",
    "eval_every",
    "resume",
    "device",
    "decode_workers",
    "pack",
    "run_dir",
}


def _check_same_run(path: Path, config: TrainConfig) -> None:
    if not path.is_file():
        return
    old, new = json.loads(path.read_text()), config.to_dict()
    changed = sorted(k for k in new if k not in _RESUMABLE and old.get(k) != new[k])
    if changed:
        diffs = "; ".join(f"{k}: checkpoints have {old.get(k)!r}, config has {new[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {path.parent}: {diffs}. Use the same settings or a new run_dir")


def _init_dir(source: str) -> Path:
    from stvla_core.model.shipped import STVLA_S_DIR, STVLA_S_NAME

    path = STVLA_S_DIR if source == STVLA_S_NAME else Path(source)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"init_from: {path} holds no model (config.json missing)")
    return path


def keep_action_grid(proc_dir: Path, source: str) -> None:
    """A run started from an earlier model keeps that model's action grid and statistics (its
    output tokens mean what they meant; a grid refitted to new data moves bin edges under every
    token) and takes only this pack's camera intrinsics."""
    fresh = json.loads((proc_dir / "processor_config.json").read_text())
    init = json.loads((_init_dir(source) / "processor_config.json").read_text())
    missing = set(fresh.get("statistics", {})) - set(init.get("statistics", {}))
    if missing:
        raise ValueError(f"init_from {source}: its processor has no statistics for {sorted(missing)}")
    init["intrinsic_config"] = fresh["intrinsic_config"]
    init["_comment"] = fresh.get("_comment", "") + f" Action grid and statistics kept from {source}."
    atomic_write_text(proc_dir / "processor_config.json", json.dumps(init, indent=2) + "\n")


def init_model(source: str, model_cfg: Any, device: torch.device) -> SpatialVLAForConditionalGeneration:
    """The weights of an earlier model as the start of a new run (fp32). Its architecture must be
    the one this run trains: widths, depths, heads and vocabulary are compared and a mismatch is
    named, so a wrong folder fails before any step."""
    path = _init_dir(source)
    model = SpatialVLAForConditionalGeneration.from_pretrained(path, device, torch.float32)
    ours, theirs = model_cfg.to_dict(), model.config.to_dict()
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    diff = [
        f"{part}.{k}: run {ours[part][k]}, init {theirs[part][k]}"
        for part in ("text_config", "vision_config")
        for k in keys
        if k in ours.get(part, {}) and ours[part][k] != theirs.get(part, {}).get(k)
    ]
    if diff:
        raise ValueError(f"init_from {path}: architecture differs from this run's ({'; '.join(diff)})")
    return model


def train(config: TrainConfig, progress: Progress = print) -> dict[str, Any]:
    """Train (or resume) the run in config.run_dir; returns the summary. One process per run
    folder (the lock dies with its holder, kill -9 included)."""
    config.validate()
    with locked_run_dir(config.run_dir):
        return _train(config, progress)


def _train(config: TrainConfig, progress: Progress) -> dict[str, Any]:
    t_start = time.time()
    run_dir = Path(config.run_dir)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    )
    use_bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and device.type == "cuda")

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    done = complete_checkpoints(run_dir)
    if done and not config.resume:
        raise FileExistsError(
            f"run_dir {run_dir} holds checkpoints (newest {done[-1].name}); resume or choose a new run_dir"
        )
    if done:
        _check_same_run(run_dir / "config.json", config)
    pack = load_pack(config.pack, [config.depth_mode], config.decode_workers or None)
    progress(
        f"pack: {len(pack.actions)} frames of {len(pack.meta['episodes'])} episodes, decoded in {time.time() - t_start:.1f} s"
    )
    train_idx, val_idx = pack.split("train"), pack.split("val")
    proc_dir = run_dir / "processor"
    if not (proc_dir / "processor_config.json").is_file():
        write_processor_config(
            proc_dir,
            pack.actions[train_idx],
            config.unnorm_key,
            np.asarray(pack.meta["intrinsics"]),
            tuple(pack.meta["frame_hw"]),
            config.chunk_size,
            f"ST-VLA-S processor: action grid and statistics fitted to the training episodes of the pack "
            f"{Path(config.pack).name} (dataset {pack.meta['config']['dataset']}); camera: the dataset's.",
        )
        if config.init_from:
            keep_action_grid(proc_dir, config.init_from)
    model_cfg = stvla_s_config(config.hidden, config.layers, config.heads)
    processor = SpatialVLAProcessor.from_pretrained(
        proc_dir,
        model_cfg.image_token_index,
        model_cfg.action_token_begin_idx,
        model_cfg.image_size,
        model_cfg.num_image_tokens,
    )
    torch.manual_seed(config.seed)
    start = 0
    if done:
        model = SpatialVLAForConditionalGeneration.from_pretrained(done[-1], device, torch.float32)
        start = json.loads((done[-1] / "state.json").read_text())["step"]
        if start > config.steps:
            raise ValueError(
                f"run_dir {run_dir} holds step {start}, past steps={config.steps}; raise steps or use a new run_dir"
            )
    elif config.init_from:
        model = init_model(config.init_from, model_cfg, device)
        progress(f"initialised from {config.init_from}")
    else:
        model = SpatialVLAForConditionalGeneration.build(model_cfg, device, torch.float32, seed=config.seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
    )
    if done:
        opt.load_state_dict(torch.load(done[-1] / "optimizer.pt", map_location=device))
        progress(f"resuming from {done[-1].name}")
    atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    metrics_path = run_dir / "metrics.jsonl"
    atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in read_metrics(metrics_path, start)))
    (run_dir / "summary.json").unlink(missing_ok=True)

    data = to_device(pack, processor, config, device)
    mean_action = pack.actions[train_idx].mean(0)
    rng = np.random.default_rng(config.seed)
    val_eval = (
        np.sort(rng.choice(val_idx, size=min(config.val_samples, len(val_idx)), replace=False))
        if len(val_idx)
        else val_idx
    )
    n_params = sum(p.numel() for p in model.parameters())
    progress(
        f"model: {n_params / 1e6:.2f} M parameters on {device} ({'bf16 autocast' if use_bf16 else 'fp32'})"
    )
    aug_rng = torch.Generator()
    last = t_warm = time.time()
    stopped_early = 0
    total = config.steps
    with metrics_path.open("a") as log:
        for step in range(start, config.steps):
            if step >= total:
                break
            lr = lr_at(config, step)
            for g in opt.param_groups:
                g["lr"] = lr
            sel = torch.as_tensor(
                train_idx[batch_indices(len(train_idx), config.batch_size, config.seed, step)], device=device
            )
            batch = make_batch(data, sel)
            if config.augment_shift:  # seeded by step, as the batches: a resumed run sees the same shifts
                aug_rng.manual_seed(config.seed * 1_000_003 + step)
                pixels, depth = shift_images(batch.pixel_values, batch.depth, config.augment_shift, aug_rng)
                batch = replace(batch, pixel_values=pixels, depth=depth)
            with autocast():
                logits = action_logits(model, batch)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            n = step + 1
            # the first steps pay for kernel selection (and, in a budget group, the other runs are
            # still loading): time steps 20..60
            if config.time_budget_s > 0 and n == start + 20:
                t_warm = time.time()
            if config.time_budget_s > 0 and n == start + 60:
                per_step = (time.time() - t_warm) / 40
                left = config.time_budget_s - (time.time() - t_start) - 30  # export and margin
                total = min(config.steps, n + max(0, int(left / (per_step * 1.15))))
                if config.budget_group:
                    total = agree_on_steps(config, total, progress)
                config = replace(config, steps=total)
                progress(f"time budget: {per_step * 1000:.0f} ms per step, training {total} steps")
            if config.time_budget_s > 0 and time.time() - t_start > config.time_budget_s - 15 and n < total:
                progress(f"time budget spent at step {n} of {total}: stopping early")
                stopped_early = n
                config = replace(config, steps=n)
                total = n
            if n % config.log_every == 0 or n == config.steps:
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"loss is {value} at step {n}; lower learning_rate")
                acc = (logits.argmax(-1) == batch.targets).float().mean().item()
                now = time.time()
                rate = config.log_every * config.batch_size / max(now - last, 1e-9)
                last = now
                log.write(
                    json.dumps(
                        {
                            "step": n,
                            "loss": value,
                            "action_accuracy": acc,
                            "lr": lr,
                            "samples_per_s": round(rate, 1),
                        }
                    )
                    + "\n"
                )
                log.flush()
                progress(
                    f"step {n}/{config.steps} loss {value:.4f} acc {acc:.3f} lr {lr:.2e} {rate:.0f} samples/s"
                )
            if len(val_eval) and (n % config.eval_every == 0 or n == config.steps):
                row = {"step": n, **evaluate(model, data, processor, val_eval, mean_action, config, autocast)}
                log.write(json.dumps(row) + "\n")
                log.flush()
                progress(
                    f"eval step {n}: held-out loss {row['val_loss']:.4f}, action L1 {row['val_action_l1']:.5f} "
                    f"(mean-action baseline {row['baseline_mean_action_l1']:.5f}), gripper {row['val_gripper_accuracy']:.3f}"
                )
                last = time.time()
            if n % config.checkpoint_every == 0 or n == config.steps:
                save_checkpoint(run_dir, n, model, opt)
    export = run_dir / "model"
    tmp = run_dir / f".tmp-model-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, torch.bfloat16, SHARD_BYTES)
    shutil.copy2(proc_dir / "processor_config.json", tmp / "processor_config.json")
    trace = dict(pack.meta["config"]["trace"])
    base, buffer = parse_mode(config.depth_mode)
    if base in VARIANTS:
        trace["variant"] = base
    trace["buffer"] = buffer or trace["buffer"]
    (tmp / TRACE_FILE).write_text(json.dumps(trace, indent=2) + "\n")
    depth_input = "traced" if base in VARIANTS else base
    (tmp / DEPTH_INPUT_FILE).write_text(json.dumps({"depth": depth_input}) + "\n")
    shutil.rmtree(export, ignore_errors=True)
    os.rename(tmp, export)
    rows = read_metrics(metrics_path, config.steps)
    train_rows = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "val_loss" in r]
    summary = {
        "steps": config.steps,
        "resumed_from": start,
        "initialised_from": config.init_from if not start else "",
        "parameters": n_params,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": "bf16 autocast, fp32 weights" if use_bf16 else "fp32",
        "train_frames": int(len(train_idx)),
        "val_frames": int(len(val_idx)),
        "first_loss": train_rows[0]["loss"] if train_rows else None,
        "last_loss": train_rows[-1]["loss"] if train_rows else None,
        "final_eval": evals[-1] if evals else None,
        "stopped_early_at": stopped_early or None,  # the time budget ran out before the planned steps
        "seconds": round(time.time() - t_start, 1),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
