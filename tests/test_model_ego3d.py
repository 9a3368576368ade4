"""Ego3D: back-projection against hand-computed points, the sinusoidal encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stvla_core.model import Ego3DPositionEmbedding, backproject_patches
from stvla_core.model.ego3d import patch_pixel_centres


def test_pixel_centres_of_the_official_grid() -> None:
    uv = patch_pixel_centres(224, 14, 2)
    assert uv.shape == (3, 32 * 32)
    assert uv[:, 0].tolist() == [3.5, 3.5, 1.0]
    assert uv[:, 1].tolist() == [10.5, 3.5, 1.0]
    assert uv[:, 32].tolist() == [3.5, 10.5, 1.0]


def test_backprojection_by_hand() -> None:
    # 8x8 depth, patches of 4 px (2x2 patches), reso 2: sub-patches of 2x2 px with centres at 1, 3, 5, 7
    depth = np.ones((8, 8), np.float32)
    depth[0:2, 2:4] = [[1, 2], [3, 4]]  # mean 2.5 at sub-patch (row 0, col 1)
    depth[6:8, 6:8] = 3.0  # sub-patch (3, 3)
    k = torch.tensor([[[2.0, 0, 4], [0, 4.0, 4], [0, 0, 1]]])
    pts = backproject_patches(torch.from_numpy(depth)[None, None], k, patch_size=4, reso=2)
    assert pts.shape == (1, 4, 12)
    # patch 0 (top-left) holds sub-patches (0,0) (0,1) (1,0) (1,1), each (x, y, z)
    p0 = pts[0, 0].reshape(4, 3)
    # (0,0): u=1, v=1, z=1 -> x = (1-4)/2 = -1.5, y = (1-4)/4 = -0.75
    np.testing.assert_allclose(p0[0], [-1.5, -0.75, 1.0])
    # (0,1): u=3, v=1, z=2.5 -> x = (3-4)/2*2.5 = -1.25, y = (1-4)/4*2.5 = -1.875
    np.testing.assert_allclose(p0[1], [-1.25, -1.875, 2.5])
    # (1,1): u=3, v=3, z=1 -> x = -0.5, y = -0.25
    np.testing.assert_allclose(p0[3], [-0.5, -0.25, 1.0])
    # patch 3 (bottom-right), its last sub-patch (3,3): u=7, v=7, z=3 -> x = 4.5, y = 2.25
    np.testing.assert_allclose(pts[0, 3].reshape(4, 3)[3], [4.5, 2.25, 3.0])
    # patch 1 (top-right), its first sub-patch (0,2): u=5, v=1, z=1 -> x = 0.5, y = -0.75
    np.testing.assert_allclose(pts[0, 1].reshape(4, 3)[0], [0.5, -0.75, 1.0])


def test_backprojection_rejects_bad_shapes() -> None:
    k = torch.eye(3)[None]
    with pytest.raises(ValueError, match="divisible by 4"):
        backproject_patches(torch.ones(1, 1, 10, 10), k, 4, 2)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        backproject_patches(torch.ones(1, 8, 8), k, 4, 2)
    with pytest.raises(ValueError, match=r"intrinsics must be \(2, 3, 3\)"):
        backproject_patches(torch.ones(2, 1, 8, 8), k, 4, 2)


def test_frequency_encoding_layout() -> None:
    enc = Ego3DPositionEmbedding(12, 16, n_freqs=8)
    assert enc.position_embedding_head[0].in_features == 12 * 17 == 204
    xyz = torch.tensor([[[0.0, 0.0, 2.0] * 4, [2.0, 0.0, 2.0] * 4]])
    e = enc.frequency_encoding(xyz).reshape(1, 2, 12, 17)
    # the centre point (0, 0, 2) encodes to [0, sin 0 x8, cos 0 x8]
    np.testing.assert_allclose(e[0, 0, 0], [0.0] * 9 + [1.0] * 8, atol=1e-7)
    # x = 2 -> c = 1: [1, sin(2^k), cos(2^k)]
    f = 2.0 ** np.arange(8)
    np.testing.assert_allclose(e[0, 1, 0], np.concatenate([[1.0], np.sin(f), np.cos(f)]), atol=1e-6)
    assert enc(xyz).shape == (1, 2, 16)


def test_bf16_grid_rounds_centres_as_the_official_bf16_model() -> None:
    depth = torch.ones(1, 1, 224, 224)
    k = torch.eye(3)[None]
    fp32 = backproject_patches(depth, k, 14, 2)
    bf16 = backproject_patches(depth, k, 14, 2, grid_dtype=torch.bfloat16)
    # the last sub-patch centre is (220.5, 220.5) px; bf16 holds it as 220
    assert fp32[0, -1, -3:].tolist() == [220.5, 220.5, 1.0]
    assert bf16[0, -1, -3:].tolist() == [220.0, 220.0, 1.0]
    assert fp32.dtype == bf16.dtype == torch.float32


def test_inverse_3x3_matches_torch_linalg() -> None:
    from stvla_core.model.ego3d import inverse_3x3

    g = torch.Generator().manual_seed(0)
    m = torch.randn(4, 3, 3, generator=g) + 3 * torch.eye(3)
    torch.testing.assert_close(inverse_3x3(m), torch.linalg.inv(m), rtol=1e-5, atol=1e-6)
    k = torch.tensor([[[218.26, 0.0, 111.83], [0.0, 291.01, 111.79], [0.0, 0.0, 1.0]]])
    torch.testing.assert_close(inverse_3x3(k) @ k, torch.eye(3)[None], rtol=0, atol=1e-6)
