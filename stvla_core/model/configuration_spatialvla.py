"""SpatialVLA configuration: a plain dataclass that reads and writes the official checkpoint's
`config.json` (hub id IPEC-COMMUNITY/spatialvla-4b-224-pt) with transformers' own sub-configs for
the three backbones (SigLIP vision tower, Gemma2 language model, ZoeDepth depth model).

`spatialvla_4b()` holds the published values; `tiny_config()` a 2-layer, 32-wide model of the same layout
that builds and steps on a CPU in well under a second (tests, the app's embedded default)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import Gemma2Config, SiglipVisionConfig, ZoeDepthConfig

# Token layout of the official checkpoint: PaliGemma's 257152 text tokens, then <image>, then the
# 8194 spatial action tokens (4096 translation + 4096 rotation + 2 gripper).
PALIGEMMA_TEXT_VOCAB = 257152
SPATIAL_TOKEN_NUM = 8194

_TOP_LEVEL = (
    "image_token_index",
    "action_token_begin_idx",
    "spatial_token_num",
    "use_spatial_token",
    "ego3d_patch_reso",
    "n_freqs",
    "use_vision_zoe",
    "projection_dim",
    "hidden_size",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)


def _sub_config(cls: type, data: dict[str, Any] | Any) -> Any:
    if isinstance(data, cls):
        return data
    data = {k: v for k, v in dict(data).items() if k not in ("model_type", "architectures", "_name_or_path")}
    return cls(**data)


@dataclass
class SpatialVLAConfig:
    """Top-level fields as in the official config.json; sub-configs as transformers objects."""

    text_config: Gemma2Config
    vision_config: SiglipVisionConfig
    vision_zoe_config: ZoeDepthConfig
    image_token_index: int = PALIGEMMA_TEXT_VOCAB
    action_token_begin_idx: int = PALIGEMMA_TEXT_VOCAB + 1
    spatial_token_num: int = SPATIAL_TOKEN_NUM
    use_spatial_token: bool = True
    ego3d_patch_reso: int = 2
    n_freqs: int = 8
    use_vision_zoe: bool = True
    projection_dim: int = 2304
    hidden_size: int = 2048
    bos_token_id: int = 2
    eos_token_id: int = 1
    pad_token_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # fields we carry but do not use

    def __post_init__(self) -> None:
        self.text_config = _sub_config(Gemma2Config, self.text_config)
        self.vision_config = _sub_config(SiglipVisionConfig, self.vision_config)
        self.vision_zoe_config = _sub_config(ZoeDepthConfig, self.vision_zoe_config)
        self.vision_config.projection_dim = self.projection_dim
        self.validate()

    # -- derived sizes ----------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.vision_config.image_size)

    @property
    def patch_size(self) -> int:
        return int(self.vision_config.patch_size)

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def vocab_size(self) -> int:
        return int(self.text_config.vocab_size)

    def validate(self) -> None:
        v, t = self.vision_config, self.text_config
        if v.image_size % v.patch_size:
            raise ValueError(f"image_size {v.image_size} is not a multiple of patch_size {v.patch_size}")
        if v.patch_size % self.ego3d_patch_reso:
            raise ValueError(
                f"patch_size {v.patch_size} is not a multiple of ego3d_patch_reso {self.ego3d_patch_reso}"
            )
        if self.projection_dim != t.hidden_size:
            raise ValueError(
                f"projection_dim {self.projection_dim} must equal the text hidden size {t.hidden_size}"
            )
        end = self.action_token_begin_idx + self.spatial_token_num
        if end > t.vocab_size:
            raise ValueError(
                f"action tokens [{self.action_token_begin_idx}, {end}) do not fit the vocabulary of "
                f"{t.vocab_size} tokens"
            )
        if not 0 <= self.image_token_index < t.vocab_size:
            raise ValueError(f"image_token_index {self.image_token_index} outside vocabulary {t.vocab_size}")

    # -- (de)serialisation in the official format ---------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpatialVLAConfig:
        data = dict(data)
        if data.get("model_type", "spatialvla") != "spatialvla":
            raise ValueError(f"config model_type: expected 'spatialvla', found {data['model_type']!r}")
        for key in ("text_config", "vision_config", "vision_zoe_config"):
            if key not in data:
                raise ValueError(f"config is missing {key!r}; is this a SpatialVLA config.json?")
        kwargs = {k: data.pop(k) for k in _TOP_LEVEL if k in data}
        if isinstance(kwargs.get("eos_token_id"), list):
            kwargs["eos_token_id"] = kwargs["eos_token_id"][0]
        return cls(
            text_config=data.pop("text_config"),
            vision_config=data.pop("vision_config"),
            vision_zoe_config=data.pop("vision_zoe_config"),
            extra=data,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update({k: getattr(self, k) for k in _TOP_LEVEL})
        out["model_type"] = "spatialvla"
        out["architectures"] = ["SpatialVLAForConditionalGeneration"]
        out["_vocab_size"] = self.vocab_size
        out["num_hidden_layers"] = self.text_config.num_hidden_layers
        out["text_config"] = self.text_config.to_diff_dict()
        out["vision_config"] = self.vision_config.to_diff_dict()
        out["vision_zoe_config"] = self.vision_zoe_config.to_diff_dict()
        for sub, mt in (("text_config", "gemma2"), ("vision_config", "siglip_vision_model")):
            out[sub]["model_type"] = mt
        out["vision_zoe_config"]["model_type"] = "zoedepth"
        out.pop("auto_map", None)  # the official remote code is not ours to point to
        return out

    @classmethod
    def from_json_file(cls, path: str | Path) -> SpatialVLAConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def zoedepth_nyu_kitti_config(**backbone_overrides: Any) -> ZoeDepthConfig:
    """The depth model SpatialVLA embeds: Intel/zoedepth-nyu-kitti (BEiT-L/384 backbone, two
    metric heads, NYU indoor up to 10 m and KITTI outdoor up to 80 m)."""
    backbone = {
        "model_type": "beit",
        "image_size": 384,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "use_relative_position_bias": True,
        "use_absolute_position_embeddings": False,
        "reshape_hidden_states": False,
        "out_indices": [6, 12, 18, 24],
        "out_features": ["stage6", "stage12", "stage18", "stage24"],
        "layer_scale_init_value": 0.1,
        "use_mean_pooling": True,
        "drop_path_rate": 0.1,
    }
    backbone.update(backbone_overrides)
    return ZoeDepthConfig(
        backbone_config=backbone,
        backbone_hidden_size=backbone["hidden_size"],
        bin_configurations=[
            {"name": "nyu", "n_bins": 64, "min_depth": 0.001, "max_depth": 10.0},
            {"name": "kitti", "n_bins": 64, "min_depth": 0.001, "max_depth": 80.0},
        ],
        num_attractors=[16, 8, 4, 1],
        neck_hidden_sizes=[256, 512, 1024, 1024],
        num_patch_transformer_layers=4,
        patch_transformer_hidden_size=128,
        patch_transformer_intermediate_size=1024,
        patch_transformer_num_attention_heads=4,
    )


def spatialvla_4b() -> SpatialVLAConfig:
    """The published IPEC-COMMUNITY/spatialvla-4b-224-pt configuration (PaliGemma2-3B-pt-224)."""
    vocab = PALIGEMMA_TEXT_VOCAB + 1 + SPATIAL_TOKEN_NUM  # 265347
    return SpatialVLAConfig(
        text_config=Gemma2Config(
            vocab_size=vocab,
            hidden_size=2304,
            intermediate_size=9216,
            num_hidden_layers=26,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=256,
            hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=False,
            eos_token_id=[1, 107],
        ),
        vision_config=SiglipVisionConfig(
            hidden_size=1152,
            intermediate_size=4304,
            num_hidden_layers=27,
            num_attention_heads=16,
            patch_size=14,
            image_size=224,
            vision_use_head=False,
        ),
        vision_zoe_config=zoedepth_nyu_kitti_config(),
        projection_dim=2304,
    )


def tiny_config(hidden: int = 32, layers: int = 2, text_vocab: int = 259) -> SpatialVLAConfig:
    """A model of the official layout with small widths: 224x224 input (256 image tokens, the
    real Ego3D grid), the full 8194-token action grid, a byte-level text vocabulary of
    `text_vocab` tokens (pad, eos, bos + 256 bytes) and a 4-layer 32-wide ZoeDepth."""
    vocab = text_vocab + 1 + SPATIAL_TOKEN_NUM
    zoe = zoedepth_nyu_kitti_config(
        hidden_size=hidden,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        out_indices=[1, 2, 3, 4],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    zoe.neck_hidden_sizes = [8, 8, 16, 16]
    zoe.fusion_hidden_size = 8
    zoe.bottleneck_features = 8
    zoe.num_relative_features = 8
    zoe.bin_embedding_dim = 8
    zoe.patch_transformer_hidden_size = 128  # transformers hard-codes 128 for the head classifier
    zoe.patch_transformer_intermediate_size = 128
    zoe.patch_transformer_num_attention_heads = 2
    zoe.num_attractors = [4, 2, 2, 1]
    zoe.bin_configurations = [
        {"name": "nyu", "n_bins": 8, "min_depth": 0.001, "max_depth": 10.0},
        {"name": "kitti", "n_bins": 8, "min_depth": 0.001, "max_depth": 80.0},
    ]
    return SpatialVLAConfig(
        text_config=Gemma2Config(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=hidden // 2,
            query_pre_attn_scalar=hidden // 2,
            tie_word_embeddings=False,
            eos_token_id=1,
            initializer_range=0.2,  # untrained logits far from uniform, so inputs change the argmax
        ),
        vision_config=SiglipVisionConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            patch_size=14,
            image_size=224,
            vision_use_head=False,
        ),
        vision_zoe_config=zoe,
        image_token_index=text_vocab,
        action_token_begin_idx=text_vocab + 1,
        projection_dim=hidden,
        hidden_size=hidden,
    )


def stvla_s_config(hidden: int = 256, layers: int = 6, heads: int = 4) -> SpatialVLAConfig:
    """ST-VLA-S: the official layout at `hidden` width with `layers` SigLIP and `layers` Gemma2
    layers (~16 M parameters at the defaults), the byte-level text vocabulary, token layout and
    full 8194-token action grid of the tiny model, 224x224 input; trained from scratch on simulator
    demonstrations (`python -m stvla_core.train`). Its ZoeDepth stays tiny and untrained: the
    policy gets depth from the episode or the simulator, never from ZoeDepth."""
    tiny = tiny_config()
    head_dim = hidden // heads
    text = tiny.text_config.to_dict()
    text.update(
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        initializer_range=0.02,
    )
    text.pop("layer_types", None)  # rebuilt for the new depth
    vision = tiny.vision_config.to_dict()
    vision.update(
        hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=heads
    )
    return SpatialVLAConfig(
        text_config=text,
        vision_config=vision,
        vision_zoe_config=tiny.vision_zoe_config,
        image_token_index=tiny.image_token_index,
        action_token_begin_idx=tiny.action_token_begin_idx,
        projection_dim=hidden,
        hidden_size=hidden,
    )
