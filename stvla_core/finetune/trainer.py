"""The LoRA training loop: prefix-LM forward (prompt bidirectional, action tokens causal) with the
loss only on the 3k action tokens, as SpatialVLA fine-tunes; atomic checkpoints and resume.

Run folder:
    config.json                 the config of the run
    metrics.jsonl               one line per logged step: step, loss, action-token accuracy, lr
    checkpoints/step_000050/    adapter + optimizer.pt + state.json + COMPLETE, renamed into place
    adapter/                    the final adapter
    summary.json                written last: a run without it did not finish
A checkpoint folder is written under a temporary name and renamed when complete; resume takes the
newest folder holding COMPLETE, so a process killed mid-write (kill -9) loses at most the steps
since the last checkpoint and never loads a half-written one."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig

from stvla_core.finetune.adapter import add_lora, save_adapter, set_adapter_weights
from stvla_core.finetune.config import FinetuneConfig
from stvla_core.finetune.samples import Samples, build_samples, load_episodes
from stvla_core.jobs.files import atomic_write_text
from stvla_core.model.modeling_spatialvla import SpatialVLAForConditionalGeneration, resolve_checkpoint
from stvla_core.model.processing_spatialvla import SpatialVLAProcessor
from stvla_core.model.tiny import processor_for, tiny_model
from stvla_core.runs import (
    COMPLETE,
    RunInUseError,  # noqa: F401  (re-exported: callers catch it from here)
    complete_checkpoints,
    locked_run_dir,
    read_metrics,
)
from stvla_core.traces import TraceConfig

Progress = Callable[[float, str], None]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) prompt + action tokens, left-padded so actions end every row
    position_ids: torch.Tensor  # (B, L) 1-indexed positions of the real tokens (pads hold 1)
    allowed: torch.Tensor  # (B, 1, L, L) bool: query i may attend to key j
    targets: torch.Tensor  # (B, 3k) the action tokens, the last 3k of every row
    pixel_values: torch.Tensor
    intrinsics: torch.Tensor
    depth: torch.Tensor


def load_model(config: FinetuneConfig) -> tuple[SpatialVLAForConditionalGeneration, SpatialVLAProcessor]:
    dtype = DTYPES[config.dtype]
    if config.model == "tiny":
        model = tiny_model(config.seed, config.device).to(dtype)
        return model, processor_for(model)
    root = resolve_checkpoint(config.model)
    model = SpatialVLAForConditionalGeneration.from_pretrained(root, config.device, dtype)
    return model, processor_for(model, root)


def lora_config(config: FinetuneConfig) -> LoraConfig:
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        modules_to_save=list(config.modules_to_save) or None,
    )


def make_batch(samples: Samples, idx: list[int], pad_id: int, device: torch.device) -> Batch:
    """Prefix-LM mask: every prompt token sees the whole prompt, action token i sees the prompt and
    the action tokens up to i, padding is seen by nobody. Left padding puts the action tokens at the
    end of every row, so the LM head runs on those positions only (the vocabulary is 265k wide)."""
    seqs = [torch.cat([samples.prompt_ids[i], samples.action_ids[i]]) for i in idx]
    n_act = samples.action_ids.shape[1]
    length = max(len(s) for s in seqs)
    b = len(idx)
    ids = torch.full((b, length), pad_id, dtype=torch.long)
    positions = torch.ones(b, length, dtype=torch.long)
    allowed = torch.zeros(b, length, length, dtype=torch.bool)
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
    for j, s in enumerate(seqs):
        pad, act = length - len(s), length - n_act
        ids[j, pad:] = s
        positions[j, pad:] = torch.arange(1, len(s) + 1)
        allowed[j, :, pad:act] = True  # pad rows too: a row that sees nothing would give NaN
        allowed[j, :, act:] = causal[:, act:]
        allowed[j, :act, act:] = False
    return Batch(
        ids.to(device),
        positions.to(device),
        allowed[:, None].to(device),
        samples.action_ids[idx].to(device),
        samples.pixel_values[idx].to(device),
        samples.intrinsics[idx].to(device),
        samples.depth[idx].to(device),
    )


def action_logits(model: SpatialVLAForConditionalGeneration, batch: Batch) -> torch.Tensor:
    """(B, 3k, V) float32 logits of the action tokens, teacher-forced: the same numbers greedy
    `generate` sees when it produced those tokens."""
    visual = model.visual_embedding(batch.pixel_values, batch.intrinsics, batch.depth)
    embeds = model.input_embeddings(batch.input_ids, visual)
    mask = torch.zeros(batch.allowed.shape, dtype=embeds.dtype, device=embeds.device)
    mask = mask.masked_fill(~batch.allowed, torch.finfo(embeds.dtype).min)
    logits = model.language_model(
        inputs_embeds=embeds,
        attention_mask={"full_attention": mask, "sliding_attention": mask},
        position_ids=batch.position_ids,
        use_cache=False,
        logits_to_keep=batch.targets.shape[1] + 1,
    ).logits
    return logits[:, :-1].float()  # the logits at position i predict token i + 1


def forward_loss(model: SpatialVLAForConditionalGeneration, batch: Batch) -> tuple[torch.Tensor, float]:
    """Mean cross-entropy over the action tokens, and the fraction of them predicted exactly
    (full-vocabulary argmax)."""
    logits = action_logits(model, batch)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1))
    acc = (logits.argmax(-1) == batch.targets).float().mean().item()
    return loss, acc


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The batch of a step depends only on (seed, step), so a resumed run sees the same batches."""
    rng = np.random.default_rng([seed, step])
    return rng.choice(n, size=batch_size, replace=n < batch_size).tolist()


def lr_at(config: FinetuneConfig, step: int) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    return config.learning_rate


# -- run folder ------------------------------------------------------------------------------
def save_checkpoint(
    run_dir: Path, step: int, model: torch.nn.Module, lcfg: LoraConfig, opt: torch.optim.Optimizer
) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp-step_{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_adapter(model, lcfg, tmp)
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step}) + "\n")
    (tmp / COMPLETE).write_text(f"{step}\n")
    if final.exists():  # an earlier, interrupted run reached this step too: replace it whole
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


# fields that may change between a run and its resumption; any other change makes the checkpoints
# belong to a different training run
_RESUMABLE = {"steps", "checkpoint_every", "log_every", "resume", "device", "episodes", "run_dir"}


def _check_same_run(path: Path, config: FinetuneConfig) -> None:
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    new = config.to_dict()
    changed = sorted(k for k in new if k not in _RESUMABLE and old.get(k) != new[k])
    if changed:
        diffs = "; ".join(f"{k}: checkpoints have {old.get(k)!r}, config has {new[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {path.parent}: {diffs}. Use the same settings or a new run_dir")


@dataclass
class RunResult:
    run_dir: Path
    adapter: Path
    summary: dict[str, Any]
    losses: list[float]


def train(config: FinetuneConfig, progress: Progress | None = None) -> RunResult:
    """Fine-tune, or resume the run in `config.run_dir`; returns the final adapter and summary.
    One process per run folder: a second one gets RunInUseError (the lock dies with its holder,
    kill -9 included)."""
    config.validate()
    with locked_run_dir(config.run_dir):
        return _train(config, report=progress or (lambda f, m: None))


def _train(config: FinetuneConfig, report: Progress) -> RunResult:
    run_dir = Path(config.run_dir)
    start_time = time.time()
    episodes = load_episodes(list(config.episodes))
    torch.manual_seed(config.seed)
    model, processor = load_model(config)
    lcfg = lora_config(config)
    add_lora(model, lcfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)

    done = complete_checkpoints(run_dir)
    if done and not config.resume:
        raise FileExistsError(
            f"run_dir {run_dir} already holds checkpoints (newest {done[-1].name}); "
            "set resume=true to continue it or choose a new run_dir"
        )
    start = 0
    if done:
        _check_same_run(run_dir / "config.json", config)
        ckpt = done[-1]
        set_adapter_weights(model, ckpt)
        opt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=model.device))
        start = json.loads((ckpt / "state.json").read_text())["step"]
        if start > config.steps:
            raise ValueError(
                f"run_dir {run_dir} holds a checkpoint at step {start}, past steps={config.steps}; "
                "raise steps or choose a new run_dir"
            )
        report(0.0, f"resuming from {ckpt.name}")
    (run_dir / "summary.json").unlink(missing_ok=True)  # written again only when this run ends
    atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    metrics_path = run_dir / "metrics.jsonl"
    metrics = read_metrics(metrics_path, start)  # drop the steps after the checkpoint resumed from
    atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in metrics))

    report(0.0, f"building samples from {len(episodes)} episode(s)")
    trace = TraceConfig(
        buffer=config.buffer, tracker=config.tracker, depth=config.depth, variant=config.variant
    )
    samples = build_samples(episodes, processor, trace, config.unnorm_key, config.every)
    pad_id = 0 if processor.image_token_id != 0 else 1
    losses = [r["loss"] for r in metrics]
    with metrics_path.open("a") as log:
        for step in range(start, config.steps):
            lr = lr_at(config, step)
            for g in opt.param_groups:
                g["lr"] = lr
            batch = make_batch(
                samples,
                batch_indices(len(samples), config.batch_size, config.seed, step),
                pad_id,
                model.device,
            )
            loss, acc = forward_loss(model, batch)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss is {loss.item()} at step {step + 1}; lower learning_rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n = step + 1
            losses.append(loss.item())
            if n % config.log_every == 0 or n == config.steps:
                log.write(
                    json.dumps({"step": n, "loss": loss.item(), "action_accuracy": acc, "lr": lr}) + "\n"
                )
                log.flush()
            if n % config.checkpoint_every == 0 or n == config.steps:
                log.flush()
                save_checkpoint(run_dir, n, model, lcfg, opt)
            report(n / config.steps, f"step {n}/{config.steps} loss {loss.item():.4f} acc {acc:.3f}")

    adapter = run_dir / "adapter"
    tmp = run_dir / f".tmp-adapter-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_adapter(model, lcfg, tmp)
    shutil.rmtree(adapter, ignore_errors=True)
    os.rename(tmp, adapter)
    rows = read_metrics(metrics_path, config.steps)
    head, tail = losses[: min(5, len(losses))], losses[-min(5, len(losses)) :]
    summary = {
        "steps": config.steps,
        "resumed_from": start,
        "samples": len(samples),
        "episodes": [e.name for e in episodes],
        "trainable_parameters": sum(p.numel() for p in params),
        "first_loss_mean": float(np.mean(head)) if head else None,
        "last_loss_mean": float(np.mean(tail)) if tail else None,
        "final_action_accuracy": rows[-1]["action_accuracy"] if rows else None,
        "adapter": str(adapter),
        "seconds": round(time.time() - start_time, 2),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    report(1.0, f"done: loss {summary['first_loss_mean']} -> {summary['last_loss_mean']}")
    return RunResult(run_dir, adapter, summary, losses)
