"""Episodes -> training samples: at each step t the RGB frame, the traced depth of the chosen variant,
the instruction, and the next k actions (padded by repeating the last) as 3k spatial action tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stvla_core.episodes import Episode, EpisodeError, load_episode
from stvla_core.model.processing_spatialvla import SpatialVLAProcessor
from stvla_core.traces import TraceConfig, TracePipeline


@dataclass
class Samples:
    """Model inputs of N samples, ready to batch. Prompts differ in length, so ids stay a list."""

    prompt_ids: list[torch.Tensor]  # N x (P_i,) int64
    action_ids: torch.Tensor  # (N, 3k) int64 target tokens
    pixel_values: torch.Tensor  # (N, 3, S, S) float32 in [0, 1]
    intrinsics: torch.Tensor  # (N, 3, 3) float32 in pixels of the model input
    depth: torch.Tensor  # (N, 1, S, S) float32 metres, traced depth
    origin: list[tuple[str, int]]  # (episode name, step t) of each sample

    def __len__(self) -> int:
        return len(self.prompt_ids)


def action_chunks(actions: np.ndarray, k: int) -> np.ndarray:
    """(T, 7) -> (T, k, 7): the chunk starting at each step, the last action repeated past the end."""
    t = len(actions)
    idx = np.minimum(np.arange(t)[:, None] + np.arange(k)[None], t - 1)
    return actions[idx]


def load_episodes(paths: list[str]) -> list[Episode]:
    episodes = []
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"episode {p!r} not found")
        ep = load_episode(p)
        if ep.actions is None:
            raise EpisodeError(f"episode {p!r} has no actions; fine-tuning needs recorded actions")
        episodes.append(ep)
    return episodes


def build_samples(
    episodes: list[Episode],
    processor: SpatialVLAProcessor,
    trace: TraceConfig,
    unnorm_key: str | None = None,
    every: int = 1,
) -> Samples:
    """All samples of the episodes. The traced depth of each step comes from one trace pipeline per
    episode (it caches the per-frame tracking and depth), so this is one pass over each episode."""
    k = processor.action_chunk_size
    stats = processor.stats(unnorm_key)
    tok = processor.action_tokenizer
    prompts, actions, pixels, intr, depths, origin = [], [], [], [], [], []
    for ep in episodes:
        if ep.actions is None:
            raise EpisodeError(f"episode {ep.name!r} has no actions; fine-tuning needs recorded actions")
        pipe = TracePipeline(trace)
        chunks = action_chunks(np.asarray(ep.actions, np.float64), k)
        for t in range(0, ep.num_frames, every):
            frame = pipe.at(ep, t)
            inputs = processor(ep.frames[t], ep.instruction, frame.traced_depth, ep.intrinsics, unnorm_key)
            prompts.append(inputs.input_ids[0])
            actions.append(torch.from_numpy(tok.encode(stats.normalize(chunks[t])).reshape(-1)))
            pixels.append(inputs.pixel_values[0])
            intr.append(inputs.intrinsics[0])
            depths.append(inputs.depth[0])
            origin.append((ep.name, t))
    if not prompts:
        raise EpisodeError("no training samples: the episodes hold no steps")
    return Samples(
        prompts, torch.stack(actions), torch.stack(pixels), torch.stack(intr), torch.stack(depths), origin
    )
