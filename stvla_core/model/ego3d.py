"""Ego3D position encoding (SpatialVLA, arXiv 2501.15830, Sec. 3.1).

A metric depth map is back-projected with the camera intrinsics to 3D points in the camera frame,
`reso x reso` points per vision patch (the depth of each point is the mean over its sub-patch);
each patch's `3 * reso**2` coordinates are encoded with NeRF-style sinusoids and an MLP, and the
result is added to the SigLIP patch embeddings. ST-VLA feeds a traced depth map here instead of
the model's own ZoeDepth estimate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Points are centred on 2 m in front of the camera and halved before the sinusoids: the encoding
# covers x, y in [-2, 2] m and z in [0, 4] m with the first frequency below one period.
EGO3D_CENTER = (0.0, 0.0, 2.0)


def patch_pixel_centres(
    image_size: int, patch_size: int, reso: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(3, (image_size // step)**2) homogeneous pixel centres (u, v, 1) of the sub-patches, row-major,
    with step = patch_size // reso (7 px for SigLIP's 14 px patches and reso 2). Made on `device`
    directly: no host-to-device copy, so a CUDA graph can capture it."""
    step = patch_size // reso
    coords = torch.arange(0, image_size, step, dtype=torch.float32, device=device) + step / 2
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1)


def inverse_3x3(m: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) -> inverses, as the adjugate over the determinant: plain element-wise kernels.
    torch.linalg.inv checks for singular matrices (a host sync) and may hand small matrices to
    MAGMA's hybrid CPU-GPU code, neither of which a CUDA graph can hold. Intrinsics are checked
    (fx, fy > 0, last row 0 0 1) on the host by the processor."""
    r0, r1, r2 = m[:, 0], m[:, 1], m[:, 2]
    cols = torch.stack(
        [torch.linalg.cross(r1, r2), torch.linalg.cross(r2, r0), torch.linalg.cross(r0, r1)], -1
    )
    det = (r0 * cols[..., 0]).sum(-1)
    return cols / det[:, None, None]


def pool_depth(depth: torch.Tensor, image_size: int, patch_size: int, reso: int) -> torch.Tensor:
    """(B, 1, S, S) metres -> (B, 1, g, g) with g = (S / patch_size) * reso: the mean depth of each
    sub-patch, which is all of the depth map the Ego3D encoding uses. A map already at (g, g) is
    returned as it is, so training can store the pooled maps instead of full-size ones."""
    g = (image_size // patch_size) * reso
    if depth.shape[-2:] == (g, g):
        return depth.float()
    return F.interpolate(depth.float(), size=(g, g), mode="area")


def backproject_patches(
    depth: torch.Tensor,
    intrinsics: torch.Tensor,
    patch_size: int,
    reso: int,
    grid_dtype: torch.dtype = torch.float32,
    image_size: int | None = None,
) -> torch.Tensor:
    """3D points per patch: depth (B, 1, H, W) metres, intrinsics (B, 3, 3) in pixels of the
    (image_size x image_size) input -> (B, (S/p)**2, 3*reso**2), points ordered (row, col) inside
    the patch, then (x, y, z). `depth` is either the full map (H = W = image_size, the default) or
    already pooled to the sub-patch grid (see `pool_depth`).

    The official model holds the pixel centres in its own dtype: in bf16, centres past 128 px
    round to whole pixels (220.5 -> 220). `grid_dtype` reproduces that; points stay float32."""
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth must be (B, 1, H, W), found {tuple(depth.shape)}")
    b, _, h, w = depth.shape
    side = image_size or h
    g = (side // patch_size) * reso
    if h != w or (side % patch_size) or (h != side and h != g):
        raise ValueError(
            f"depth must be square with a side divisible by {patch_size} ({side}x{side}) or pooled to "
            f"{g}x{g}, found {h}x{w}"
        )
    if intrinsics.shape != (b, 3, 3):
        raise ValueError(f"intrinsics must be ({b}, 3, 3), found {tuple(intrinsics.shape)}")
    hp = side // patch_size
    sub = pool_depth(depth, side, patch_size, reso).reshape(b, 1, -1)
    uv1 = patch_pixel_centres(side, patch_size, reso, depth.device).to(grid_dtype).float()
    rays = inverse_3x3(intrinsics.float()) @ uv1  # (B, 3, n) camera rays with z = 1
    points = rays * sub  # (B, 3, n)
    points = points.reshape(b, 3, hp, reso, hp, reso).permute(0, 2, 4, 3, 5, 1)
    return points.reshape(b, hp * hp, 3 * reso * reso)


class Ego3DPositionEmbedding(nn.Module):
    """Sinusoidal encoding of patch 3D points followed by Linear-LayerNorm-ReLU-Linear.
    Parameter names match the official `position_embedding_3d` module."""

    def __init__(self, in_channels: int, num_pos_feats: int, n_freqs: int = 8) -> None:
        super().__init__()
        if in_channels % 3:
            raise ValueError(f"in_channels must hold whole (x, y, z) points, found {in_channels}")
        self.n_freqs = n_freqs
        self.register_buffer(
            "freq_bands", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False
        )
        self.register_buffer("center", torch.tensor(EGO3D_CENTER).repeat(in_channels // 3), persistent=False)
        self.position_embedding_head = nn.Sequential(
            nn.Linear(in_channels * (2 * n_freqs + 1), num_pos_feats),
            nn.LayerNorm(num_pos_feats),
            nn.ReLU(),
            nn.Linear(num_pos_feats, num_pos_feats),
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p, gain=0.01)  # small, so a fresh encoder barely moves SigLIP

    def frequency_encoding(self, xyz: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, N, M) points -> (B, N, M * (2F + 1)): per coordinate [c, sin(2^k c), cos(2^k c)],
        computed in `dtype` (the official model computes it in the model's dtype, bf16 on a GPU)."""
        c = ((xyz.float() - self.center.float()) / 2.0).to(dtype)
        scaled = c.unsqueeze(-1) * self.freq_bands.to(dtype)
        enc = torch.cat([c.unsqueeze(-1), torch.sin(scaled), torch.cos(scaled)], dim=-1)
        return enc.reshape(*xyz.shape[:2], -1)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        dtype = self.position_embedding_head[0].weight.dtype
        return self.position_embedding_head(self.frequency_encoding(xyz, dtype))
