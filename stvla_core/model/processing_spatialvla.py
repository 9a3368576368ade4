"""SpatialVLA pre- and post-processing: images, depth maps and intrinsics in, action tokens out.

Reads and writes the official `processor_config.json` (action grids, dataset statistics, camera
intrinsics, chunk size). Images are resized to the model's square input (bicubic, as SigLIP's
image processor) and scaled to [0, 1]; the model normalises them itself, separately for SigLIP
and ZoeDepth. The prompt is PaliGemma's: `<image>` x 256, `<bos>`, the instruction, a newline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from PIL import Image

from stvla_core.model.action_tokenizer import (
    ActionGrid,
    ActionStatistics,
    DecodedToken,
    SpatialActionTokenizer,
)

PROCESSOR_FILE = "processor_config.json"
IMAGE_TOKEN = "<image>"
DEFAULT_UNNORM_KEY = "bridge_orig/1.0.0"


class TextTokenizer(Protocol):
    bos_token_id: int
    eos_token_id: int

    def encode_prompt(self, text: str) -> list[int]: ...


class ByteTokenizer:
    """Byte-level text tokens for the tiny model: 0 pad, 1 eos, 2 bos, 3 + byte."""

    pad_token_id, eos_token_id, bos_token_id = 0, 1, 2
    offset = 3
    vocab_size = 259

    def encode_prompt(self, text: str) -> list[int]:
        return [self.offset + b for b in text.encode("utf-8")]

    def decode(self, ids: list[int]) -> str:
        return bytes(i - self.offset for i in ids if self.offset <= i < self.vocab_size).decode(
            "utf-8", "replace"
        )


class HFTextTokenizer:
    """The checkpoint's own Gemma tokenizer (transformers), used exactly as the official processor."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.bos_token_id = int(tokenizer.bos_token_id)
        self.eos_token_id = int(tokenizer.eos_token_id)

    def encode_prompt(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


@dataclass
class ModelInputs:
    """Observations ready for the model (the processor makes a batch of 1; `stack` more)."""

    input_ids: torch.Tensor  # (B, L) int64
    pixel_values: torch.Tensor  # (B, 3, S, S) float32 in [0, 1]
    intrinsics: torch.Tensor  # (B, 3, 3) float32, pixels of the S x S input
    depth: torch.Tensor | None  # (B, 1, S, S) float32 metres, or None: the model estimates depth
    attention_mask: torch.Tensor | None = None  # (B, L) int64, 0 on left padding; None: no padding

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ModelInputs:
        pv = self.pixel_values.to(device, dtype) if dtype else self.pixel_values.to(device)
        return ModelInputs(
            self.input_ids.to(device),
            pv,
            self.intrinsics.to(device),
            None if self.depth is None else self.depth.to(device),
            None if self.attention_mask is None else self.attention_mask.to(device),
        )

    @classmethod
    def stack(cls, items: list[ModelInputs], pad_token_id: int) -> ModelInputs:
        """One batch of single observations; prompts of unequal length are left-padded with
        `pad_token_id`, so every prompt ends where generation starts."""
        if not items:
            raise ValueError("stack: expected at least one ModelInputs, found none")
        with_depth = [it.depth is not None for it in items]
        if any(with_depth) and not all(with_depth):
            raise ValueError(
                f"stack: depth given for {sum(with_depth)} of {len(items)} observations; give it for all or none"
            )
        width = max(it.input_ids.shape[1] for it in items)
        ids = torch.full((len(items), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, it in enumerate(items):
            n = it.input_ids.shape[1]
            ids[i, width - n :] = it.input_ids[0]
            mask[i, width - n :] = 1
        return cls(
            ids,
            torch.cat([it.pixel_values for it in items]),
            torch.cat([it.intrinsics for it in items]),
            torch.cat([it.depth for it in items]) if all(with_depth) else None,
            mask,
        )


@dataclass
class DecodedActions:
    actions: np.ndarray  # (k, 7) in dataset units (unnormalised)
    normalized: np.ndarray  # (k, 7) in [-1, 1] (gripper in {0, 1})
    token_ids: np.ndarray  # (k, 3) int64
    tokens: list[list[DecodedToken]]  # per action: translation, rotation, gripper cells


def check_rgb(rgb: np.ndarray, name: str = "image") -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array (H, W, 3) uint8, found {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{name}: expected (H, W, 3) uint8 RGB, found shape {rgb.shape} dtype {rgb.dtype}")
    if min(rgb.shape[:2]) < 8:
        raise ValueError(f"{name}: expected at least 8x8 pixels, found {rgb.shape[1]}x{rgb.shape[0]}")
    return rgb


def check_depth(depth: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if not isinstance(depth, np.ndarray):
        raise TypeError(f"depth: expected a numpy array (H, W) float32 metres, found {type(depth).__name__}")
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(
            f"depth: expected (H, W) float32 metres, found shape {depth.shape} dtype {depth.dtype}"
        )
    if depth.shape != hw:
        raise ValueError(f"depth has shape {depth.shape}, image is {hw}")
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise ValueError(
            "depth: expected finite metres >= 0 (0 marks invalid), found NaN, inf or negative values"
        )
    return depth.astype(np.float32, copy=False)


def check_intrinsics(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, dtype=np.float64)
    if k.shape != (3, 3) or not np.isfinite(k).all():
        raise ValueError(f"intrinsics: expected a finite (3, 3) pinhole matrix, found shape {k.shape}")
    if k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0, 0, 1]):
        raise ValueError(f"intrinsics: expected fx, fy > 0 and last row (0, 0, 1), found {k.tolist()}")
    return k


def scale_intrinsics(k: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image resized from `from_hw` to `to_hw` (rows 0 and 1 scale with x and y)."""
    out = np.array(k, dtype=np.float64)
    out[0] *= to_hw[1] / from_hw[1]
    out[1] *= to_hw[0] / from_hw[0]
    return out


class SpatialVLAProcessor:
    """Turns (RGB, optional depth, optional intrinsics, instruction) into `ModelInputs` and the
    generated action tokens back into actions."""

    def __init__(
        self,
        config: dict[str, Any],
        tokenizer: TextTokenizer,
        image_token_id: int,
        action_token_begin_idx: int,
        image_size: int = 224,
        num_image_tokens: int = 256,
    ) -> None:
        self.config = config
        self.text_tokenizer = tokenizer
        self.image_token_id = int(image_token_id)
        self.image_size = int(image_size)
        self.num_image_tokens = int(num_image_tokens)
        self.action_chunk_size = int(config.get("action_chunk_size", 1))
        self.num_obs_steps = int(config.get("num_obs_steps", 1))
        if self.num_obs_steps != 1:
            raise ValueError(
                f"only single-image checkpoints are supported, found num_obs_steps={self.num_obs_steps}"
            )
        action_config = config["action_config"]
        grid = ActionGrid.from_bin_policy(
            config["bin_policy"], bool(action_config.get("use_spherical", True))
        )
        expected = action_config["num_bins"].get("total")
        if expected is not None and grid.vocab_size != expected:
            raise ValueError(f"bin_policy has {grid.vocab_size} tokens, action_config says {expected}")
        self.action_tokenizer = SpatialActionTokenizer(grid, action_token_begin_idx)
        self.statistics = {k: ActionStatistics.from_dict(v) for k, v in config.get("statistics", {}).items()}
        self.intrinsic_config = config.get("intrinsic_config", {})

    # -- files ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        image_token_id: int,
        action_token_begin_idx: int,
        image_size: int = 224,
        num_image_tokens: int = 256,
    ) -> SpatialVLAProcessor:
        path = Path(path)
        file = path / PROCESSOR_FILE
        if not file.is_file():
            raise FileNotFoundError(f"no {PROCESSOR_FILE} in {path}; expected a SpatialVLA checkpoint folder")
        config = json.loads(file.read_text())
        if config.get("text_tokenizer") == "bytes":
            tok: TextTokenizer = ByteTokenizer()
        else:
            from transformers import AutoTokenizer

            tok = HFTextTokenizer(AutoTokenizer.from_pretrained(str(path)))
        return cls(config, tok, image_token_id, action_token_begin_idx, image_size, num_image_tokens)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = dict(self.config)
        config["bin_policy"] = self.action_tokenizer.grid.to_bin_policy()
        if isinstance(self.text_tokenizer, ByteTokenizer):
            config["text_tokenizer"] = "bytes"
        elif isinstance(self.text_tokenizer, HFTextTokenizer):
            self.text_tokenizer.tokenizer.save_pretrained(str(path))
        (path / PROCESSOR_FILE).write_text(json.dumps(config, indent=2) + "\n")

    # -- inputs -----------------------------------------------------------------------------
    def default_intrinsics(self, unnorm_key: str | None = None) -> np.ndarray:
        """The checkpoint's camera for `unnorm_key` (else its "default", the Bridge camera:
        fx 623.588, cx 319.501, fy 623.588, cy 239.545 at 640x480), scaled to the model input.
        For 224x224 that is fx 218.26, fy 291.01, cx 111.83, cy 111.79."""
        entry = self.intrinsic_config.get(unnorm_key or "", self.intrinsic_config.get("default"))
        if entry is None:
            raise ValueError("no intrinsics given and the processor config holds no default camera")
        k = np.asarray(entry["intrinsic"], dtype=np.float64)
        return scale_intrinsics(k, (entry["height"], entry["width"]), (self.image_size, self.image_size))

    def prompt_ids(self, instruction: str) -> list[int]:
        if not isinstance(instruction, str):
            raise TypeError(f"instruction: expected a string, found {type(instruction).__name__}")
        tok = self.text_tokenizer
        return (
            [self.image_token_id] * self.num_image_tokens
            + [tok.bos_token_id]
            + tok.encode_prompt(instruction + "\n")
        )

    def pixel_values(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, S, S) float32 in [0, 1]."""
        rgb = check_rgb(rgb)
        s = self.image_size
        if rgb.shape[:2] != (s, s):
            rgb = np.asarray(Image.fromarray(rgb).resize((s, s), Image.Resampling.BICUBIC))
        return torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1) / 255.0

    def depth_values(self, depth: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
        """(H, W) metres -> (1, S, S); nearest neighbour keeps trace depths and invalid zeros exact
        (the Ego3D encoder averages over sub-patches itself)."""
        depth = check_depth(depth, hw)
        s = self.image_size
        if depth.shape != (s, s):
            depth = cv2.resize(depth, (s, s), interpolation=cv2.INTER_NEAREST)
        return torch.from_numpy(np.array(depth, dtype=np.float32))[None]

    def __call__(
        self,
        rgb: np.ndarray,
        instruction: str,
        depth: np.ndarray | None = None,
        intrinsics: np.ndarray | None = None,
        unnorm_key: str | None = None,
    ) -> ModelInputs:
        """`intrinsics` are in pixels of `rgb`; None takes the checkpoint's default camera."""
        rgb = check_rgb(rgb)
        hw = rgb.shape[:2]
        if intrinsics is None:
            k = self.default_intrinsics(unnorm_key)
        else:
            k = scale_intrinsics(check_intrinsics(intrinsics), hw, (self.image_size, self.image_size))
        return ModelInputs(
            input_ids=torch.tensor([self.prompt_ids(instruction)], dtype=torch.long),
            pixel_values=self.pixel_values(rgb)[None],
            intrinsics=torch.tensor(k, dtype=torch.float32)[None],
            depth=None if depth is None else self.depth_values(depth, hw)[None],
        )

    # -- outputs ----------------------------------------------------------------------------
    def stats(self, unnorm_key: str | None) -> ActionStatistics:
        if not self.statistics:
            raise ValueError("the processor holds no dataset statistics to unnormalise actions with")
        key = unnorm_key or (
            DEFAULT_UNNORM_KEY if DEFAULT_UNNORM_KEY in self.statistics else next(iter(self.statistics))
        )
        if key not in self.statistics:
            raise KeyError(
                f"unnorm_key {key!r} not in the statistics; known: {', '.join(sorted(self.statistics))}"
            )
        return self.statistics[key]

    def decode_actions(self, token_ids: np.ndarray, unnorm_key: str | None = None) -> DecodedActions:
        """3k generated token ids -> k actions, unnormalised with the dataset's q01/q99."""
        normalized, tokens = self.action_tokenizer.decode_detailed(np.asarray(token_ids))
        return DecodedActions(
            actions=self.stats(unnorm_key).unnormalize(normalized).astype(np.float32),
            normalized=normalized.astype(np.float32),
            token_ids=self.action_tokenizer.check(np.asarray(token_ids)),
            tokens=tokens,
        )
