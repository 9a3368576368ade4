"""The processor: prompt format, images, depth, intrinsics, decoding, bad input, its files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stvla_core.model import ActionTokenError, SpatialVLAProcessor, tiny_processor
from stvla_core.model.processing_spatialvla import ByteTokenizer, scale_intrinsics


@pytest.fixture(scope="module")
def proc() -> SpatialVLAProcessor:
    return tiny_processor()


def rgb(h: int = 224, w: int = 224) -> np.ndarray:
    return (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)


def test_prompt_is_paligemmas(proc: SpatialVLAProcessor) -> None:
    ids = proc.prompt_ids("pick up the cup")
    assert ids[:256] == [259] * 256  # <image> x 256
    assert ids[256] == ByteTokenizer.bos_token_id
    assert ids[257:] == [3 + b for b in b"pick up the cup\n"]


def test_default_intrinsics_for_224(proc: SpatialVLAProcessor) -> None:
    k = proc.default_intrinsics()
    # the Bridge camera (fx = fy = 623.588, cx 319.501, cy 239.545 at 640x480) scaled to 224x224
    np.testing.assert_allclose(
        k, [[623.588 * 0.35, 0, 319.501 * 0.35], [0, 623.588 * 224 / 480, 239.545 * 224 / 480], [0, 0, 1]]
    )
    inp = proc(rgb(), "x")
    np.testing.assert_allclose(inp.intrinsics[0].numpy(), k, rtol=1e-6)


def test_given_intrinsics_are_scaled_with_the_image(proc: SpatialVLAProcessor) -> None:
    k = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    inp = proc(rgb(480, 640), "x", intrinsics=k)
    np.testing.assert_allclose(
        inp.intrinsics[0].numpy(), [[140, 0, 112], [0, 186.6667, 112], [0, 0, 1]], rtol=1e-5
    )
    np.testing.assert_allclose(scale_intrinsics(k, (480, 640), (480, 640)), k)


def test_images_and_depth_are_resized_to_the_model_input(proc: SpatialVLAProcessor) -> None:
    d = np.full((120, 160), 2.0, np.float32)
    d[:60] = 0.0  # invalid top half stays exactly 0 (nearest neighbour)
    inp = proc(rgb(120, 160), "x", depth=d)
    assert inp.pixel_values.shape == (1, 3, 224, 224) and inp.pixel_values.dtype == torch.float32
    assert 0.0 <= float(inp.pixel_values.min()) and float(inp.pixel_values.max()) <= 1.0
    assert inp.depth.shape == (1, 1, 224, 224)
    assert set(np.unique(inp.depth.numpy()).tolist()) == {0.0, 2.0}
    same = proc(rgb(), "x")
    np.testing.assert_allclose(same.pixel_values[0].permute(1, 2, 0).numpy() * 255, rgb(), atol=1e-4)


def test_bad_inputs_are_named(proc: SpatialVLAProcessor) -> None:
    with pytest.raises(
        ValueError, match=r"image: expected \(H, W, 3\) uint8 RGB, found shape \(224, 224, 3\) dtype float32"
    ):
        proc(rgb().astype(np.float32), "x")
    with pytest.raises(ValueError, match=r"found shape \(224, 224\)"):
        proc(rgb()[..., 0], "x")
    with pytest.raises(TypeError, match="numpy array"):
        proc(torch.zeros(224, 224, 3), "x")
    with pytest.raises(ValueError, match=r"depth has shape \(100, 100\), image is \(224, 224\)"):
        proc(rgb(), "x", depth=np.ones((100, 100), np.float32))
    with pytest.raises(ValueError, match="depth: expected finite metres >= 0"):
        proc(rgb(), "x", depth=np.full((224, 224), -1.0, np.float32))
    with pytest.raises(
        ValueError, match=r"depth: expected \(H, W\) float32 metres, found shape \(224, 224\) dtype uint8"
    ):
        proc(rgb(), "x", depth=np.ones((224, 224), np.uint8))
    with pytest.raises(
        ValueError, match=r"intrinsics: expected a finite \(3, 3\) pinhole matrix, found shape \(2, 2\)"
    ):
        proc(rgb(), "x", intrinsics=np.eye(2))
    with pytest.raises(ValueError, match="fx, fy > 0"):
        proc(rgb(), "x", intrinsics=np.diag([0.0, 1.0, 1.0]))
    with pytest.raises(TypeError, match="instruction"):
        proc(rgb(), None)


def test_decode_actions_unnormalises_and_rejects_non_action_tokens(proc: SpatialVLAProcessor) -> None:
    normalized = np.array([[0.2, -0.1, 0.3, 0.1, -0.2, 0.05, 1.0]] * 4)
    ids = proc.action_tokenizer.encode(normalized).reshape(-1)
    out = proc.decode_actions(ids)
    assert out.actions.shape == (4, 7) and out.actions.dtype == np.float32
    np.testing.assert_allclose(
        out.actions, proc.stats("bridge_orig/1.0.0").unnormalize(out.normalized), atol=1e-6
    )
    assert out.tokens[0][2].kind == "gripper"
    ids[4] = 5  # a text byte where a rotation token belongs
    with pytest.raises(ActionTokenError, match=r"token 4 \(action 1, rotation\) is id 5"):
        proc.decode_actions(ids)
    with pytest.raises(KeyError, match="unnorm_key 'nope' not in the statistics; known: bridge_orig/1.0.0"):
        proc.decode_actions(ids[:3], "nope")


def test_save_and_load_processor_files(proc: SpatialVLAProcessor, tmp_path: Path) -> None:
    proc.save_pretrained(tmp_path)
    back = SpatialVLAProcessor.from_pretrained(tmp_path, 259, 260)
    for key, e in proc.action_tokenizer.grid.edges.items():
        np.testing.assert_array_equal(back.action_tokenizer.grid.edges[key], e)
    assert back.action_chunk_size == 4
    assert back.prompt_ids("a") == proc.prompt_ids("a")
    with pytest.raises(FileNotFoundError, match="no processor_config.json"):
        SpatialVLAProcessor.from_pretrained(tmp_path / "empty", 259, 260)


def test_checkpoint_tokenizer_path(proc: SpatialVLAProcessor, tmp_path: Path) -> None:
    """A folder without the tiny marker loads its transformers tokenizer, as the real checkpoint."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "pick": 3, "up": 4, "<unk>": 5}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(str(tmp_path))
    config = {k: v for k, v in proc.config.items() if k != "text_tokenizer"}
    (tmp_path / "processor_config.json").write_text(json.dumps(config))
    loaded = SpatialVLAProcessor.from_pretrained(tmp_path, image_token_id=6, action_token_begin_idx=7)
    assert loaded.prompt_ids("pick up") == [6] * 256 + [2, 3, 4]
