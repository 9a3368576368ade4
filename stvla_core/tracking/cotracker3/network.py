"""CoTracker3 network (Karaev et al., 2024), written afresh with the module names and parameter
shapes of the official `CoTrackerThreeOffline` / `CoTrackerThreeOnline`, so the official
checkpoints (`scaled_offline.pth`, `scaled_online.pth`) load with `strict=True`.

The network knows nothing about files, resizing or drawing (see `predictor.py`). It is split in two
so a caller can cache the expensive half: `encode` turns frames into unit-norm feature maps, one
frame at a time and independently of every other frame (instance norm), and `track` runs the
iterative transformer on a stack of such maps. `forward(video, queries)` chains the two and matches
the official `forward` (offline: one window over the clip; online: windows of `window_len` frames
moving by half a window, each started from the previous window's answer).

Shapes: video (B, T, 3, H, W) float 0..255 at the model resolution; queries (B, N, 3) as
(frame, x, y) in model-resolution pixels; tracks (B, T, N, 2) pixels; visibility and confidence
(B, T, N) probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LATENT_DIM = 128  # channels of the feature maps
HIDDEN_SIZE = 384  # transformer width
CORR_EMB = 256  # width of one pyramid level's correlation embedding
POSENC_DEGREES = 10  # frequencies of the relative-motion encoding


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, out_features: int, tanh_gelu: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh" if tanh_gelu else "none")
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ResidualBlock(nn.Module):
    """Two 3x3 convs with instance norm; a strided 1x1 conv on the skip path when downsampling."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.norm1 = nn.InstanceNorm2d(planes)
        self.norm2 = nn.InstanceNorm2d(planes)
        self.downsample = (
            None
            if stride == 1
            else nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), nn.InstanceNorm2d(planes))
        )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


class BasicEncoder(nn.Module):
    """Per-frame CNN: four residual stages at strides 2, 2, 4, 8, 16, all resized to 1/`stride`
    and fused, giving `output_dim` channels at (H/stride, W/stride)."""

    def __init__(self, input_dim: int = 3, output_dim: int = LATENT_DIM, stride: int = 4):
        super().__init__()
        self.stride = stride
        half, three_q = output_dim // 2, output_dim // 4 * 3
        self.conv1 = nn.Conv2d(input_dim, half, 7, stride=2, padding=3)
        self.norm1 = nn.InstanceNorm2d(half)
        self.layer1 = self._stage(half, half, 1)
        self.layer2 = self._stage(half, three_q, 2)
        self.layer3 = self._stage(three_q, output_dim, 2)
        self.layer4 = self._stage(output_dim, output_dim, 2)
        self.conv2 = nn.Conv2d(half + three_q + 2 * output_dim, output_dim * 2, 3, padding=1)
        self.norm2 = nn.InstanceNorm2d(output_dim * 2)
        self.conv3 = nn.Conv2d(output_dim * 2, output_dim, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_planes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(ResidualBlock(in_planes, planes, stride), ResidualBlock(planes, planes))

    def forward(self, x: Tensor) -> Tensor:
        size = (x.shape[-2] // self.stride, x.shape[-1] // self.stride)
        x = F.relu(self.norm1(self.conv1(x)))
        feats, y = [], x
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            y = layer(y)
            feats.append(F.interpolate(y, size, mode="bilinear", align_corners=True))
        return self.conv3(F.relu(self.norm2(self.conv2(torch.cat(feats, dim=1)))))


class Attention(nn.Module):
    def __init__(self, query_dim: int, context_dim: int | None = None, num_heads: int = 8):
        super().__init__()
        self.heads = num_heads
        self.to_q = nn.Linear(query_dim, query_dim)
        self.to_kv = nn.Linear(context_dim or query_dim, query_dim * 2)
        self.to_out = nn.Linear(query_dim, query_dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        b, n, c = x.shape
        context = x if context is None else context
        k, v = self.to_kv(context).chunk(2, dim=-1)

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, t.shape[1], self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(x)), heads(k), heads(v))
        return self.to_out(out.transpose(1, 2).reshape(b, n, c))


class AttnBlock(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), hidden_size, tanh_gelu=True)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    def __init__(self, hidden_size: int, context_dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.norm_context = nn.LayerNorm(hidden_size)
        self.cross_attn = Attention(hidden_size, context_dim=context_dim, num_heads=num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), hidden_size, tanh_gelu=True)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.cross_attn(self.norm1(x), self.norm_context(context))
        return x + self.mlp(self.norm2(x))


class EfficientUpdateFormer(nn.Module):
    """Alternates attention along time (per track) with attention across tracks routed through
    `num_virtual_tracks` learned tokens, so cost grows linearly in the number of points."""

    def __init__(
        self,
        space_depth: int = 3,
        time_depth: int = 3,
        input_dim: int = 1110,
        hidden_size: int = HIDDEN_SIZE,
        num_heads: int = 8,
        output_dim: int = 4,
        mlp_ratio: float = 4.0,
        num_virtual_tracks: int = 64,
    ):
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.flow_head = nn.Linear(hidden_size, output_dim - 2)
        self.vis_conf_head = nn.Linear(hidden_size, 2)
        self.virual_tracks = nn.Parameter(
            torch.randn(1, num_virtual_tracks, 1, hidden_size)
        )  # sic: official name

        def blocks(cls: type[nn.Module], *args: int) -> nn.ModuleList:
            return nn.ModuleList(cls(*args, mlp_ratio=mlp_ratio) for _ in range(space_depth))

        self.time_blocks = nn.ModuleList(
            AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(time_depth)
        )
        self.space_virtual_blocks = blocks(AttnBlock, hidden_size, num_heads)
        self.space_point2virtual_blocks = blocks(CrossAttnBlock, hidden_size, hidden_size, num_heads)
        self.space_virtual2point_blocks = blocks(CrossAttnBlock, hidden_size, hidden_size, num_heads)
        self.space_every = time_depth // space_depth
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.flow_head.weight, std=0.001)
        nn.init.trunc_normal_(self.vis_conf_head.weight, std=0.001)

    def forward(self, x: Tensor, input_weight: Tensor | None = None) -> Tensor:
        """x (B, N, T, input_dim) -> (B, N, T, 4): dx, dy, visibility logit, confidence logit.
        `input_weight`: the input transform's weight with zero columns appended, for an x padded
        with as many zero columns (`CoTrackerThreeBase.refine`)."""
        weight = self.input_transform.weight if input_weight is None else input_weight
        tokens = F.linear(x, weight, self.input_transform.bias)
        b, n_pts, t, c = tokens.shape
        tokens = torch.cat([tokens, self.virual_tracks.expand(b, -1, t, -1)], dim=1)
        n = tokens.shape[1]
        j = 0
        for i, time_block in enumerate(self.time_blocks):
            tokens = time_block(tokens.reshape(b * n, t, c)).view(b, n, t, c)
            if i % self.space_every == 0:
                space = tokens.permute(0, 2, 1, 3).reshape(b * t, n, c)
                points, virtual = space[:, :n_pts], space[:, n_pts:]
                virtual = self.space_virtual2point_blocks[j](virtual, points)
                virtual = self.space_virtual_blocks[j](virtual)
                points = self.space_point2virtual_blocks[j](points, virtual)
                tokens = torch.cat([points, virtual], dim=1).view(b, t, n, c).permute(0, 2, 1, 3)
                j += 1
        tokens = tokens[:, :n_pts]
        return torch.cat([self.flow_head(tokens), self.vis_conf_head(tokens)], dim=-1)


def sincos_embedding(dim: int, positions: Tensor) -> Tensor:
    """(1, M, dim) sine | cosine embedding of M positions (the transformer's time embedding)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = positions.reshape(-1, 1).double() * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)[None].float()


def posenc(x: Tensor, degrees: int = POSENC_DEGREES) -> Tensor:
    """x followed by sin and cos of x * 2^k for k < degrees (cos written as a shifted sin)."""
    scales = 2.0 ** torch.arange(degrees, dtype=x.dtype, device=x.device)
    xb = (x[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(torch.cat([xb, xb + 0.5 * math.pi], dim=-1))], dim=-1)


def consts(like: Tensor, values: Sequence[float]) -> Tensor:
    """(len(values),) in `like`'s dtype and device, written by fill kernels: `new_tensor(values)`
    would copy host memory, which a CUDA graph capture refuses."""
    return torch.stack([like.new_full((), v) for v in values])


def pair(like: Tensor, x: float, y: float) -> Tensor:
    """(2,) [x, y] (see `consts`)."""
    return consts(like, (x, y))


def aligned(n: int) -> int:
    """n rounded up to a multiple of 8: bf16 rows of that many elements start on 16-byte
    boundaries, which the fast (Hopper) matmul kernels need; an odd width such as corr_mlp's 2401
    sends cuBLAS to old, slow ones."""
    return -(-n // 8) * 8


def compute_dtype(like: Tensor) -> torch.dtype:
    """The dtype matmuls on `like`'s device run in: autocast's when it is on, else like's."""
    kind = like.device.type
    on = torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind)
    return torch.get_autocast_dtype(kind) if on else like.dtype


class PyramidAtlas(NamedTuple):
    """Every frame's pyramid levels packed into one float32 image per clip, so that one
    `grid_sample` call reads the neighbourhoods of all points on all levels and frames, and writes
    them where the correlation's matmul reads them (`CoTrackerThreeBase.correlate`).

    A frame's tile holds level 0 with the coarser levels stacked in a column to its right; tiles
    fill a roughly square grid, since grid_sample's [-1, 1] coordinates round to ~3e-8 of the
    image's side (~1e-5 px at 392 x 420, the 32 frames of 56 x 56 of an online b = 30 clip). Points are clamped to their level
    before the tile's origin is added: that is the official border padding, so a sample gives a
    neighbouring tile no more than that rounding's weight."""

    image: Tensor  # (B, C, H, W) float32
    bias: Tensor  # (T, L, 2) grid coordinates (x, y) of pixel (0, 0) of each frame's level
    scale: Tensor  # (2,) grid units per pixel, x and y
    last: Tensor  # (L, 2) the largest pixel coordinates (x, y) on each level
    factor: Tensor  # (L,) level pixels per level-0 pixel: 2^-l
    offsets: Tensor  # (P, 2) the (2r+1)^2 neighbourhood (x, y), x fastest (see `corr_weight`)

    def frames(self, start: int, stop: int) -> PyramidAtlas:
        """The atlas with frames start..stop-1 numbered from 0 (one window)."""
        return self._replace(bias=self.bias[start:stop])


def pack_pyramid(levels: list[Tensor], radius: int) -> PyramidAtlas:
    """levels (B, T, C, h_l, w_l), each half the previous (`pyramid`) -> their atlas."""
    b, t, c, h0, w0 = levels[0].shape
    sizes = [tuple(lvl.shape[-2:]) for lvl in levels]
    tw = w0 + max((w for _, w in sizes[1:]), default=0)  # the column of coarser levels: h1 + h2 + ... < h0
    cols = max(1, math.ceil(math.sqrt(t * h0 / tw)))
    rows = -(-t // cols)
    tiles = levels[0].new_zeros(b, rows * cols, c, h0, tw, dtype=torch.float32)
    tiles[:, :t, :, :, :w0] = levels[0]
    corners, y = [0.0, 0.0], 0
    for (h, w), lvl in zip(sizes[1:], levels[1:], strict=True):
        tiles[:, :t, :, y : y + h, w0 : w0 + w] = lvl
        corners += [w0, y]
        y += h
    image = tiles.view(b, rows, cols, c, h0, tw).permute(0, 3, 1, 4, 2, 5)
    image = image.reshape(b, c, rows * h0, cols * tw)
    scale = pair(image, 2 / max(cols * tw - 1, 1), 2 / max(rows * h0 - 1, 1))
    k = torch.arange(t, device=image.device)
    tile = torch.stack([(k % cols) * tw, (k // cols) * h0], dim=-1).to(image.dtype)  # (T, 2)
    origin = tile[:, None] + consts(image, corners).view(-1, 2)  # (T, L, 2) pixels
    d = torch.linspace(-radius, radius, 2 * radius + 1, device=image.device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    return PyramidAtlas(
        image=image,
        bias=origin * scale - 1,
        scale=scale,
        last=consts(image, [v for h, w in sizes for v in (w - 1, h - 1)]).view(-1, 2),
        factor=consts(image, [2.0**-i for i in range(len(levels))]),
        offsets=torch.stack([dx, dy], dim=-1).view(-1, 2),
    )


class CoTrackerThreeBase(nn.Module):
    """Shared parts of the offline and online models (the official attribute names)."""

    def __init__(
        self,
        window_len: int = 8,
        stride: int = 4,
        corr_radius: int = 3,
        corr_levels: int = 4,
        num_virtual_tracks: int = 64,
        model_resolution: tuple[int, int] = (384, 512),
    ):
        super().__init__()
        self.window_len = window_len
        self.stride = stride
        self.corr_radius = corr_radius
        self.corr_levels = corr_levels
        self.latent_dim = LATENT_DIM
        self.model_resolution = tuple(model_resolution)
        self.input_dim = 2 + corr_levels * CORR_EMB + 4 * (1 + 2 * POSENC_DEGREES)
        self.fnet = BasicEncoder(3, LATENT_DIM, stride)
        self.updateformer = EfficientUpdateFormer(
            input_dim=self.input_dim, num_virtual_tracks=num_virtual_tracks
        )
        r = 2 * corr_radius + 1
        self.corr_mlp = Mlp(r**4, HIDDEN_SIZE, CORR_EMB)
        self.register_buffer("time_emb", sincos_embedding(self.input_dim, torch.arange(window_len)))

    # --- features -----------------------------------------------------------------------------
    def encode(self, video: Tensor) -> Tensor:
        """(B, T, 3, H, W) 0..255 -> (B, T, 128, H/stride, W/stride) unit-norm feature maps.
        Frames are encoded independently, so a caller may cache them per frame."""
        b, t, c, h, w = video.shape
        if h % self.stride or w % self.stride:
            raise ValueError(f"video size must be a multiple of stride {self.stride}, found {(h, w)}")
        fmaps = self.fnet((2 * (video / 255.0) - 1.0).reshape(b * t, c, h, w))
        norm = fmaps.square().sum(1, keepdim=True).sqrt().clamp_min(1e-12)
        return (fmaps / norm).reshape(b, t, *fmaps.shape[1:])

    def pyramid(self, fmaps: Tensor) -> list[Tensor]:
        b, t = fmaps.shape[:2]
        levels = [fmaps]
        for _ in range(self.corr_levels - 1):
            pooled = F.avg_pool2d(levels[-1].flatten(0, 1), 2, stride=2)
            levels.append(pooled.reshape(b, t, *pooled.shape[1:]))
        return levels

    def atlas(self, fmaps: Tensor) -> PyramidAtlas:
        return pack_pyramid(self.pyramid(fmaps), self.corr_radius)

    # --- correlation --------------------------------------------------------------------------
    @staticmethod
    def _grid(atlas: PyramidAtlas, xy: Tensor, bias: Tensor) -> Tensor:
        """grid_sample coordinates of each point's neighbourhood on every level, clamped to the
        level (border padding): xy (B, N, S, 2) level-0 feature-map pixels, bias (`atlas.bias`)
        broadcastable to (B, L, N, S, 1, 2) -> (B, L, N, S, P, 2). Level first: one
        grid_sample's threads go through the levels one after another, as the official
        per-level calls did, so the feature maps they read at once are one level's."""
        pts = xy[:, None, :, :, None] * atlas.factor[:, None, None, None, None] + atlas.offsets
        last = atlas.last[:, None, None, None]
        return torch.addcmul(bias, torch.clamp(pts, torch.zeros_like(last), last), atlas.scale)

    def supports(self, atlas: PyramidAtlas, queries: Tensor) -> Tensor:
        """The features of each query's neighbourhood on every level of its own frame, laid out
        as the correlation's right operand in the dtype its matmul runs in: queries (B, N, 3)
        (frame, x, y) -> (B, L*N, C, Q), the P neighbourhood positions padded with zeros to Q
        (`aligned`)."""
        b, n = queries.shape[:2]
        frames = queries[..., 0].long()
        xy = (queries[..., 1:3] / self.stride)[:, :, None]  # (B, N, 1, 2)
        bias = atlas.bias[frames].transpose(1, 2)[:, :, :, None, None]  # (B, L, N, 1, 1, 2)
        grid = self._grid(atlas, xy, bias)  # (B, L, N, 1, P, 2)
        p = grid.shape[-2]
        feats = F.grid_sample(
            atlas.image, grid.reshape(b, -1, p, 2), align_corners=True, padding_mode="border"
        )  # (B, C, L N, P)
        feats = F.pad(feats.permute(0, 2, 1, 3), (0, aligned(p) - p))
        return feats.to(compute_dtype(atlas.image)).contiguous()

    def corr_weight(self, dtype: torch.dtype) -> Tensor:
        """corr_mlp's first weight for the correlation as `correlate` lays it out: (384, P*Q), in
        the matmul's dtype (cast once, not per call). The official layout takes the moving
        point's offset first, then the query's, each with its x offset outermost (the official
        grid puts its first axis on x); ours samples x fastest, so neighbouring threads of
        grid_sample read neighbouring pixels, and pads the query's P offsets to Q with zero
        columns."""
        w = self.corr_mlp.fc1.weight
        k = 2 * self.corr_radius + 1
        w = w.view(-1, k, k, k, k).permute(0, 2, 1, 4, 3).reshape(-1, k * k, k * k)  # x fastest
        return F.pad(w, (0, aligned(k * k) - k * k)).flatten(1).to(dtype)

    def correlate(self, atlas: PyramidAtlas, coords: Tensor, supports: Tensor, weight: Tensor) -> Tensor:
        """Local 4D correlation around each track point on every level, embedded by `corr_mlp`:
        coords (B, N, S, 2) level-0 feature-map pixels on the atlas' frames, supports from
        `supports`, weight from `corr_weight` -> (B, L, N, S, 256).

        One grid_sample per clip writes (C, L*N, S*P): for each level and point an (S*P, C)
        block with C as its leading dimension, which is a matmul operand as it lies. Its product
        with the (C, Q) support of that point and level is (S, P, Q), the order corr_mlp reads,
        so nothing of the (L*N*S*P, C) samples is copied or permuted; the official einsum
        "btnhwc,bnijc->btnhwij" made them contiguous twice. Clips go one at a time, so one clip's
        float32 samples (1.4 GB for 900 points, 16 frames) are alive at once."""
        b, n, s, _ = coords.shape
        levels = atlas.factor.shape[0]
        grid = self._grid(atlas, coords, atlas.bias.transpose(0, 1)[:, None, :, None])
        grid = grid.reshape(b, levels * n, -1, 2)
        mlp = self.corr_mlp
        out = []
        for i in range(b):
            feats = F.grid_sample(
                atlas.image[i : i + 1], grid[i : i + 1], align_corners=True, padding_mode="border"
            )[0]  # (C, L N, S P)
            corr = torch.bmm(feats.permute(1, 2, 0), supports[i])  # (L N, S P, Q)
            hidden = mlp.act(F.linear(corr.view(levels, n, s, -1), weight, mlp.fc1.bias))
            out.append(mlp.fc2(hidden))
        return torch.stack(out)

    def interpolate_time_embed(self, t: int) -> Tensor:
        if t == self.time_emb.shape[1]:
            return self.time_emb
        return F.interpolate(self.time_emb.permute(0, 2, 1), size=t, mode="linear").permute(0, 2, 1)

    def refine(
        self,
        atlas: PyramidAtlas,
        supports: Tensor,
        coords: Tensor,
        vis: Tensor,
        conf: Tensor,
        iters: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """`iters` transformer updates of one window (`atlas.frames` of it). coords (B, S, N, 2)
        in feature-map pixels, vis / conf (B, S, N) logits; returns the updated three.

        The updates work in the transformer's order (B, N, S, ...), so an update's input is one
        concatenation; its width is padded with zero columns to a multiple of 8 (`aligned`), the
        input transform's weight with as many zero columns, so that matmul reads aligned rows."""
        b, s, n, _ = coords.shape
        scale = pair(coords, self.model_resolution[1] / self.stride, self.model_resolution[0] / self.stride)
        dtype = compute_dtype(coords)
        corr_weight = self.corr_weight(dtype)
        pad = aligned(self.input_dim) - self.input_dim
        in_weight = F.pad(self.updateformer.input_transform.weight, (0, pad)).to(dtype)
        time_emb = F.pad(self.interpolate_time_embed(s), (0, pad)).to(coords.dtype)  # (1, S, D)
        zeros = coords.new_zeros(b, n, s, pad)
        coords = coords.transpose(1, 2)
        vis, conf = vis.transpose(1, 2)[..., None], conf.transpose(1, 2)[..., None]
        for _ in range(iters):
            corr = self.correlate(atlas, coords, supports, corr_weight)
            step = (coords[:, :, 1:] - coords[:, :, :-1]) / scale
            motion = posenc(torch.cat([F.pad(-step, (0, 0, 0, 1)), F.pad(step, (0, 0, 1, 0))], dim=-1))
            x = torch.cat([vis, conf, *corr.unbind(1), motion, zeros], dim=-1) + time_emb
            delta = self.updateformer(x, in_weight)  # (B, N, S, 4)
            coords = coords + delta[..., :2]
            vis = vis + delta[..., 2:3]
            conf = conf + delta[..., 3:]
        return coords.transpose(1, 2), vis[..., 0].transpose(1, 2), conf[..., 0].transpose(1, 2)

    def forward(self, video: Tensor, queries: Tensor, iters: int = 4) -> tuple[Tensor, Tensor, Tensor]:
        return self.track(self.encode(video), queries, iters)

    def track(self, fmaps: Tensor, queries: Tensor, iters: int = 4) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError


class CoTrackerThreeOffline(CoTrackerThreeBase):
    """Tracks the whole clip in one window (time embedding stretched to the clip length)."""

    def track(self, fmaps: Tensor, queries: Tensor, iters: int = 4) -> tuple[Tensor, Tensor, Tensor]:
        """fmaps from `encode`, queries (B, N, 3) -> tracks (B, T, N, 2) px, vis, conf (B, T, N)."""
        b, t = fmaps.shape[:2]
        n = queries.shape[1]
        atlas = self.atlas(fmaps)
        supports = self.supports(atlas, queries)
        coords = (queries[:, None, :, 1:3] / self.stride).expand(b, t, n, 2).float()
        zeros = fmaps.new_zeros(b, t, n)
        coords, vis, conf = self.refine(atlas, supports, coords, zeros, zeros, iters)
        return coords * self.stride, vis.sigmoid(), conf.sigmoid()


class CoTrackerThreeOnline(CoTrackerThreeBase):
    """Tracks with windows of `window_len` frames moving by half a window; each window starts
    from the previous one's answer on the frames they share (the official non-streaming path of
    the online model). The clip is padded with its last frame to a whole number of windows; a
    clip of at most half a window still gets one window (the official code returns zeros there)."""

    def track(self, fmaps: Tensor, queries: Tensor, iters: int = 4) -> tuple[Tensor, Tensor, Tensor]:
        b, t = fmaps.shape[:2]
        n = queries.shape[1]
        s = self.window_len
        step = s // 2
        pad = (s - t % s) % s
        if pad:
            fmaps = torch.cat([fmaps, fmaps[:, -1:].expand(b, pad, *fmaps.shape[2:])], dim=1)
        atlas = self.atlas(fmaps)
        supports = self.supports(atlas, queries).unflatten(1, (-1, n))  # (B, L, N, C, Q)
        q_frames = queries[..., 0].long()  # (B, N)
        out_xy = fmaps.new_zeros(b, t, n, 2)
        out_vis = fmaps.new_zeros(b, t, n)
        out_conf = fmaps.new_zeros(b, t, n)
        coords = (queries[:, None, :, 1:3] / self.stride).expand(b, s, n, 2).float()
        vis = fmaps.new_zeros(b, s, n)
        conf = fmaps.new_zeros(b, s, n)
        for start in range(0, step * max(1, (t - s + step - 1) // step + 1), step):
            if start > 0:
                carry = (q_frames < start + s - step)[:, None]  # (B, 1, N)

                def hold(prev: Tensor) -> Tensor:
                    return torch.cat([prev, prev[:, -1:].expand(-1, step, *prev.shape[2:])], dim=1)

                prev = slice(start, start + s - step)
                coords = torch.where(carry[..., None], hold(out_xy[:, prev] / self.stride), coords)
                vis = torch.where(carry, hold(out_vis[:, prev]), vis)
                conf = torch.where(carry, hold(out_conf[:, prev]), conf)
            active = (q_frames < start + s)[:, None, :, None, None]  # (B, 1, N, 1, 1)
            masked = (supports * active).flatten(1, 2)
            xy, v, c = self.refine(atlas.frames(start, start + s), masked, coords, vis, conf, iters)
            keep = min(t - start, s)
            out_xy[:, start : start + keep] = xy[:, :keep] * self.stride
            out_vis[:, start : start + keep] = v[:, :keep]
            out_conf[:, start : start + keep] = c[:, :keep]
        return out_xy, out_vis.sigmoid(), out_conf.sigmoid()
