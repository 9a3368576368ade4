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

    def forward(self, x: Tensor) -> Tensor:
        """x (B, N, T, input_dim) -> (B, N, T, 4): dx, dy, visibility logit, confidence logit."""
        tokens = self.input_transform(x)
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


def pair(like: Tensor, x: float, y: float) -> Tensor:
    """(2,) [x, y] in `like`'s dtype and device, written by fill kernels: `new_tensor([x, y])`
    would copy host memory, which a CUDA graph capture refuses."""
    return torch.stack((like.new_full((), x), like.new_full((), y)))


def sample(fmap: Tensor, xy: Tensor) -> Tensor:
    """Bilinear samples of fmap (M, C, H, W) at pixel centres xy (M, P, Q, 2) -> (M, C, P, Q);
    border padding, as the official `bilinear_sampler`."""
    h, w = fmap.shape[-2:]
    scale = pair(xy, 2 / max(w - 1, 1), 2 / max(h - 1, 1))
    return F.grid_sample(fmap, xy * scale - 1, align_corners=True, padding_mode="border")


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

    def _offsets(self, device: torch.device) -> Tensor:
        r = self.corr_radius
        d = torch.linspace(-r, r, 2 * r + 1, device=device)
        dy, dx = torch.meshgrid(d, d, indexing="ij")
        # (i, j) -> (x + i-offset, y + j-offset): the official grid puts its first axis on x.
        return torch.stack([dy, dx], dim=-1)

    def query_support(self, level: Tensor, frames: Tensor, xy: Tensor) -> Tensor:
        """Features in a (2r+1)^2 patch around each query on its own frame:
        level (B, T, C, h, w), frames (B, N) long, xy (B, N, 2) level pixels -> (B, r*r, N, C)."""
        b, n = frames.shape
        maps = level[torch.arange(b, device=level.device)[:, None], frames]  # (B, N, C, h, w)
        pts = xy[:, :, None, None] + self._offsets(xy.device)  # (B, N, r, r, 2)
        feats = sample(maps.flatten(0, 1), pts.flatten(0, 1).flatten(1, 2)[:, :, None])
        return feats[..., 0].reshape(b, n, level.shape[2], -1).permute(0, 3, 1, 2)

    def correlate(self, level: Tensor, xy: Tensor, support: Tensor) -> Tensor:
        """Local 4D correlation around each track point, embedded by `corr_mlp`:
        level (B, S, C, h, w), xy (B, S, N, 2), support (B, r*r, N, C) -> (B, S, N, 256)."""
        b, s, c, h, w = level.shape
        n = xy.shape[2]
        pts = xy[:, :, :, None, None] + self._offsets(xy.device)  # (B, S, N, r, r, 2)
        feats = sample(level.flatten(0, 1), pts.reshape(b * s, n, -1, 2))  # (B S, C, N, r r)
        feats = feats.reshape(b, s, c, n, -1).permute(0, 1, 3, 4, 2)  # (B, S, N, rr, C)
        corr = torch.einsum("bsnpc,bqnc->bsnpq", feats, support)
        return self.corr_mlp(corr.reshape(b, s, n, -1))

    def interpolate_time_embed(self, t: int) -> Tensor:
        if t == self.time_emb.shape[1]:
            return self.time_emb
        return F.interpolate(self.time_emb.permute(0, 2, 1), size=t, mode="linear").permute(0, 2, 1)

    def refine(
        self,
        pyramid: list[Tensor],
        supports: list[Tensor],
        coords: Tensor,
        vis: Tensor,
        conf: Tensor,
        iters: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """`iters` transformer updates of one window. coords (B, S, N, 2) in feature-map pixels,
        vis / conf (B, S, N) logits; returns the updated three."""
        b, s, n, _ = coords.shape
        scale = pair(coords, self.model_resolution[1] / self.stride, self.model_resolution[0] / self.stride)
        time_emb = self.interpolate_time_embed(s).to(coords.dtype)
        for _ in range(iters):
            corr = [
                self.correlate(level, coords / 2**i, support)
                for i, (level, support) in enumerate(zip(pyramid, supports, strict=True))
            ]
            fwd = F.pad(coords[:, :-1] - coords[:, 1:], (0, 0, 0, 0, 0, 1)) / scale
            bwd = F.pad(coords[:, 1:] - coords[:, :-1], (0, 0, 0, 0, 1, 0)) / scale
            motion = posenc(torch.cat([fwd, bwd], dim=-1))
            x = torch.cat([vis[..., None], conf[..., None], *corr, motion], dim=-1)
            x = x.permute(0, 2, 1, 3) + time_emb[:, None]  # (B, N, S, D)
            delta = self.updateformer(x).permute(0, 2, 1, 3)  # (B, S, N, 4)
            coords = coords + delta[..., :2]
            vis = vis + delta[..., 2]
            conf = conf + delta[..., 3]
        return coords, vis, conf

    def supports(self, pyramid: list[Tensor], queries: Tensor) -> list[Tensor]:
        frames = queries[..., 0].long()
        xy = queries[..., 1:3] / self.stride
        return [self.query_support(lvl, frames, xy / 2**i) for i, lvl in enumerate(pyramid)]

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
        pyramid = self.pyramid(fmaps)
        supports = self.supports(pyramid, queries)
        coords = (queries[:, None, :, 1:3] / self.stride).expand(b, t, n, 2).float()
        zeros = fmaps.new_zeros(b, t, n)
        coords, vis, conf = self.refine(pyramid, supports, coords, zeros, zeros, iters)
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
        pyramid = self.pyramid(fmaps)
        supports = self.supports(pyramid, queries)
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
            active = (q_frames < start + s)[:, None, :, None]  # (B, 1, N, 1)
            window = [lvl[:, start : start + s] for lvl in pyramid]
            masked = [sup * active for sup in supports]
            xy, v, c = self.refine(window, masked, coords, vis, conf, iters)
            keep = min(t - start, s)
            out_xy[:, start : start + keep] = xy[:, :keep] * self.stride
            out_vis[:, start : start + keep] = v[:, :keep]
            out_conf[:, start : start + keep] = c[:, :keep]
        return out_xy, out_vis.sigmoid(), out_conf.sigmoid()
