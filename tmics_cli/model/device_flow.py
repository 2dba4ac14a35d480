"""DIS optical flow in PyTorch ops: the same method as OpenCV's DISOpticalFlow, batched, on any device.

OpenCV's DIS (Kroeger et al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016) runs on the host
CPU, one pair of frames at a time. PatchInverseSearchFlow computes the same scheme with tensor operations
only (conv2d, unfold / fold, grid_sample, interpolate), for all pairs of a batch at once, so the flow runs
where the network runs (CUDA, MPS or the CPU). No weights, no gradient.

The scheme, per pair (reference I0, neighbour I1, both luma in [0, 255]), coarse to fine:

  pyramid      I0, I1 area-downscaled by 2 per level, from 1/2**coarsest down to 1/2**finest (OpenCV's
               choice of the coarsest level: a patch spans about 1/4 of the frame's longer side there);
  inverse search
               a grid of `patch_size` patches every `patch_stride` pixels of I0; each patch's displacement
               starts from the coarser level's flow at its centre and, in `passes` passes, takes the best of
               itself and its grid neighbours' displacements (spatial propagation; OpenCV sweeps the grid
               in raster order, here every patch looks at its neighbours at once, `propagation` times per
               pass) and then runs inverse-compositional Gauss-Newton on the patch-mean-normalised SSD
               (OpenCV's update scale, `step`, with its early stop when the SSD stops falling); a result
               more than a patch size away from its start is dropped;
  densification
               each pixel's flow is the average of the displacements of the patches covering it, weighted
               by 1 / max(1, |I1(x + u) - I0(x)|);
  variational refinement
               `refine_iterations` fixed-point iterations of the energy of OpenCV's VariationalRefinement
               (robust brightness constancy `delta`, gradient constancy `gamma`, robust smoothness `alpha`),
               each solved by `sor_iterations` red-black SOR sweeps (relaxation `omega`);

then the finest level's flow is upsampled (bilinear, times 2**finest) to the frame.

Presets follow OpenCV's: "medium" (finest level 1/2, stride 3, 25 descent steps, 5 refinement iterations),
"fast" (finest 1/4, stride 4, 16 steps) and "ultrafast" (finest 1/4, stride 4, 12 steps, no refinement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

LUMA = (0.299, 0.587, 0.114)  # BT.601, as DISFlow's grey conversion


@dataclass(frozen=True)
class DISParams:
    """The parameters of the scheme (see the module doc); defaults are OpenCV's DIS "medium"."""

    finest_scale: int = 1
    patch_size: int = 8
    patch_stride: int = 3
    descent_iterations: int = 25  # in all, split over `passes`
    passes: int = 2
    propagation: int = 1  # neighbour-candidate rounds at the start of each pass
    step: float = 0.125  # Gauss-Newton step scale: OpenCV's unnormalised 3x3 Sobel gradients make it 1/8
    refine_iterations: int = 5
    sor_iterations: int = 5
    alpha: float = 20.0
    gamma: float = 10.0
    delta: float = 5.0
    omega: float = 1.6
    zeta: float = 0.1
    epsilon: float = 0.001


PRESETS: dict[str, DISParams] = {
    "medium": DISParams(),
    "fast": DISParams(finest_scale=2, patch_stride=4, descent_iterations=16),
    "ultrafast": DISParams(finest_scale=2, patch_stride=4, descent_iterations=12, refine_iterations=0),
}


def coarsest_scale(h: int, w: int, patch_size: int) -> int:
    """OpenCV's coarsest pyramid level for an h x w frame."""
    by_motion = int(math.log(max(w, h) / (4.0 * patch_size)) / math.log(2.0) + 0.5)
    by_patch = int(math.log(min(w, h) / patch_size) / math.log(2.0))
    return max(0, min(by_motion, by_patch))


def _warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """image (M, C, h, w) sampled at x + flow(x), border repeated (as align.backward_warp) -> (M, C, h, w)."""
    _, _, h, w = image.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    grid = torch.stack(
        [2 * (xs + flow[:, 0]) / max(w - 1, 1) - 1, 2 * (ys + flow[:, 1]) / max(h - 1, 1) - 1], dim=-1
    )
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _sobel(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Derivatives d/dx, d/dy of (M, 1, h, w) by the 3x3 Sobel operator / 8 (border repeated)."""
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=image.device) / 8
    kernels = torch.stack([k, k.t()]).unsqueeze(1).to(image.dtype)  # (2, 1, 3, 3)
    g = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernels)
    return g[:, :1], g[:, 1:]


def _central_x(image: torch.Tensor) -> torch.Tensor:
    """image(x + 1) - image(x - 1), border repeated (OpenCV's Sobel with ksize 1)."""
    p = F.pad(image, (1, 1, 0, 0), mode="replicate")
    return p[..., 2:] - p[..., :-2]


def _central_y(image: torch.Tensor) -> torch.Tensor:
    p = F.pad(image, (0, 0, 1, 1), mode="replicate")
    return p[..., 2:, :] - p[..., :-2, :]


def _forward_x(image: torch.Tensor) -> torch.Tensor:
    """image(x + 1) - image(x), 0 on the last column."""
    return F.pad(image[..., 1:] - image[..., :-1], (0, 1, 0, 0))


def _forward_y(image: torch.Tensor) -> torch.Tensor:
    return F.pad(image[..., 1:, :] - image[..., :-1, :], (0, 0, 0, 1))


def _shift_right(image: torch.Tensor) -> torch.Tensor:
    """out(x) = image(x - 1), 0 on the first column."""
    return F.pad(image[..., :-1], (1, 0, 0, 0))


def _shift_down(image: torch.Tensor) -> torch.Tensor:
    return F.pad(image[..., :-1, :], (0, 0, 1, 0))


class _Patches:
    """The patch grid of one level for M pairs: reference patches, their gradients and structure tensors,
    and bilinear sampling of the neighbour at the patches displaced by one vector each."""

    def __init__(self, i0: torch.Tensor, i1: torch.Tensor, size: int, stride: int) -> None:
        # i0, i1: (M, 1, h, w) luma in [0, 255]
        m, _, h, w = i0.shape
        self.i1, self.size, self.stride = i1, size, stride
        self.hs, self.ws = 1 + (h - size) // stride, 1 + (w - size) // stride  # patches per column / row
        self.n = size * size
        gx, gy = _sobel(i0)
        self.ref = F.unfold(i0, size, stride=stride)  # (M, n, P)
        self.gx = F.unfold(gx, size, stride=stride)
        self.gy = F.unfold(gy, size, stride=stride)
        self.sum_x, self.sum_y = self.gx.sum(1), self.gy.sum(1)  # (M, P)
        hxx, hyy, hxy = (self.gx**2).sum(1), (self.gy**2).sum(1), (self.gx * self.gy).sum(1)
        det = hxx * hyy - hxy**2
        det = torch.where(det.abs() < 1e-6, torch.full_like(det, 1e-6), det)
        self.inv = (hyy / det, -hxy / det, hxx / det)  # (M, P) each: H^-1 = [[a, b], [b, c]]
        dev, dt = i0.device, i0.dtype
        offset = torch.arange(size, device=dev, dtype=dt)
        oy, ox = torch.meshgrid(offset, offset, indexing="ij")  # (size, size)
        py = (torch.arange(self.hs, device=dev, dtype=dt) * stride).view(self.hs, 1).expand(self.hs, self.ws)
        px = (torch.arange(self.ws, device=dev, dtype=dt) * stride).view(1, self.ws).expand(self.hs, self.ws)
        # normalised grid_sample coordinates of every patch pixel, (n, P)
        self.base_x = (ox.reshape(-1, 1) + px.reshape(1, -1)) * (2 / max(w - 1, 1)) - 1
        self.base_y = (oy.reshape(-1, 1) + py.reshape(1, -1)) * (2 / max(h - 1, 1)) - 1
        self.scale = (2 / max(w - 1, 1), 2 / max(h - 1, 1))

    def sample(self, u: torch.Tensor) -> torch.Tensor:
        """The neighbour at every patch displaced by u (M, 2, P) -> (M, n, P)."""
        gx = self.base_x + u[:, :1] * self.scale[0]  # (M, n, P)
        gy = self.base_y + u[:, 1:] * self.scale[1]
        grid = torch.stack([gx, gy], dim=-1)  # (M, n, P, 2)
        return F.grid_sample(self.i1, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]

    def ssd(self, u: torch.Tensor) -> torch.Tensor:
        """Patch-mean-normalised SSD of every patch at displacement u (M, 2, P) -> (M, P)."""
        d = self.sample(u) - self.ref
        return (d**2).sum(1) - d.sum(1) ** 2 / self.n

    def propagate(self, u: torch.Tensor, forward: bool) -> torch.Tensor:
        """Each patch takes the best of its own displacement and those of its left and upper (forward) or
        right and lower (backward) grid neighbours. u: (M, 2, P) -> (M, 2, P)."""
        m = u.shape[0]
        grid = u.view(m, 2, self.hs, self.ws)
        candidates = [_neighbour(grid, -1, forward), _neighbour(grid, -2, forward)]
        best, best_ssd = u, self.ssd(u)
        for cand in candidates:
            c = cand.reshape(m, 2, -1)
            c_ssd = self.ssd(c)
            better = (c_ssd < best_ssd).unsqueeze(1)
            best = torch.where(better, c, best)
            best_ssd = torch.minimum(c_ssd, best_ssd)
        return best

    def descend(self, u: torch.Tensor, iterations: int, step: float) -> torch.Tensor:
        """Inverse-compositional Gauss-Newton on the mean-normalised SSD, as OpenCV's: a patch stops after
        the step taken from a displacement whose SSD no longer fell; results farther than a patch size
        from the start are dropped. u: (M, 2, P) -> (M, 2, P)."""
        start = u
        a, b, c = self.inv
        prev = torch.full_like(u[:, 0], float("inf"))
        active = torch.ones_like(prev, dtype=torch.bool)
        for _ in range(iterations):
            d = self.sample(u) - self.ref  # (M, n, P)
            sd = d.sum(1)
            ssd = (d**2).sum(1) - sd**2 / self.n
            bx = (d * self.gx).sum(1) - sd * self.sum_x / self.n
            by = (d * self.gy).sum(1) - sd * self.sum_y / self.n
            du = torch.stack([a * bx + b * by, b * bx + c * by], 1)  # (M, 2, P)
            u = u - step * du * active.unsqueeze(1)
            active = active & (ssd < prev)
            prev = ssd
            if not bool(active.any()):
                break
        far = (u - start).norm(dim=1, keepdim=True) > self.size
        return torch.where(far, start, u)

    def densify(self, u: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Dense flow (M, 2, h, w) from patch displacements u (M, 2, P): per pixel, the average of the
        covering patches' displacements weighted by 1 / max(1, |I1(x + u) - I0(x)|)."""
        m = u.shape[0]
        weight = 1 / (self.sample(u) - self.ref).abs().clamp_min(1.0)  # (M, n, P)
        hc, wc = (self.hs - 1) * self.stride + self.size, (self.ws - 1) * self.stride + self.size
        fold = {"output_size": (hc, wc), "kernel_size": self.size, "stride": self.stride}
        num = F.fold((weight.unsqueeze(1) * u.unsqueeze(2)).reshape(m, 2 * self.n, -1), **fold)
        den = F.fold(weight, **fold)  # (M, 1, hc, wc)
        dense = num / den
        return F.pad(dense, (0, w - wc, 0, h - hc), mode="replicate")  # pixels past the last patch


def _neighbour(grid: torch.Tensor, dim: int, before: bool) -> torch.Tensor:
    """Each grid cell's neighbour along `dim` (the one before it, or after it); cells on the edge keep
    their own value. grid: (M, 2, hs, ws) -> (M, 2, hs, ws)."""
    n = grid.shape[dim]
    if before:
        return torch.cat([grid.narrow(dim, 0, 1), grid.narrow(dim, 0, n - 1)], dim)
    return torch.cat([grid.narrow(dim, 1, n - 1), grid.narrow(dim, n - 1, 1)], dim)


def _neighbour_sum(d: torch.Tensor, edges: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Sum over the 4 neighbours of d (M, 1, h, w), each times the weight of the edge to it."""
    right, left, below, above = edges
    d_right = F.pad(d[..., 1:], (0, 1, 0, 0))
    d_below = F.pad(d[..., 1:, :], (0, 0, 0, 1))
    return right * d_right + left * _shift_right(d) + below * d_below + above * _shift_down(d)


def variational_refinement(
    i0: torch.Tensor, i1: torch.Tensor, flow: torch.Tensor, p: DISParams
) -> torch.Tensor:
    """OpenCV's VariationalRefinement (as DIS uses it) for M pairs: i0, i1 (M, 1, h, w) luma in [0, 255],
    flow (M, 2, h, w) -> refined flow (M, 2, h, w).

    The data terms are linearised once around `flow` (derivatives of the mean of I0 and the warped I1, by
    central differences); each fixed-point iteration re-weights the robust (Charbonnier) terms at the
    current increment and solves the linear system by red-black SOR.
    """
    warped = _warp(i1, flow)
    avg, iz = 0.5 * (i0 + warped), warped - i0
    ix, iy = _central_x(avg), _central_y(avg)
    ixz, iyz = _central_x(iz), _central_y(iz)
    ixx, ixy, iyy = _central_x(ix), _central_y(ix), _central_y(iy)
    zeta2, eps2 = p.zeta**2, p.epsilon**2
    norm0 = ix**2 + iy**2 + zeta2  # normalisation of the brightness term
    norm1 = ixx**2 + ixy**2 + zeta2  # of the x-gradient term
    norm2 = iyy**2 + ixy**2 + zeta2  # of the y-gradient term
    fu, fv = flow[:, :1], flow[:, 1:]
    du, dv = torch.zeros_like(fu), torch.zeros_like(fv)
    h, w = flow.shape[-2:]
    ys = torch.arange(h, device=flow.device).view(h, 1)
    xs = torch.arange(w, device=flow.device).view(1, w)
    red = ((ys + xs) % 2 == 0).view(1, 1, h, w)
    colours = (red, ~red)
    for _ in range(p.refine_iterations):
        # data terms at the current increment
        res = iz + ix * du + iy * dv
        wd = (p.delta / 2) / torch.sqrt(res**2 / norm0 + eps2) / norm0
        a11 = wd * ix**2 + zeta2
        a12 = wd * ix * iy
        a22 = wd * iy**2 + zeta2
        b1 = -wd * iz * ix
        b2 = -wd * iz * iy
        res_x = ixz + ixx * du + ixy * dv
        res_y = iyz + ixy * du + iyy * dv
        wg = (p.gamma / 2) / torch.sqrt(res_x**2 / norm1 + res_y**2 / norm2 + eps2)
        a11 = a11 + wg * (ixx**2 / norm1 + ixy**2 / norm2)
        a12 = a12 + wg * (ixx * ixy / norm1 + ixy * iyy / norm2)
        a22 = a22 + wg * (ixy**2 / norm1 + iyy**2 / norm2)
        b1 = b1 - wg * (ixx * ixz / norm1 + ixy * iyz / norm2)
        b2 = b2 - wg * (ixy * ixz / norm1 + iyy * iyz / norm2)
        # robust smoothness of the current flow: weights of the edges to the right (wx) and below (wy)
        cu, cv = fu + du, fv + dv
        ws = (p.alpha / 2) / torch.sqrt(
            _forward_x(cu) ** 2 + _forward_x(cv) ** 2 + _forward_y(cu) ** 2 + _forward_y(cv) ** 2 + eps2
        )
        wx = F.pad(ws[..., :-1], (0, 1, 0, 0))
        wy = F.pad(ws[..., :-1, :], (0, 0, 0, 1))
        wsum = wx + _shift_right(wx) + wy + _shift_down(wy)
        a11, a22 = a11 + wsum, a22 + wsum
        for f, b in ((fu, b1), (fv, b2)):
            gx, gy = wx * _forward_x(f), wy * _forward_y(f)
            b.add_(gx - _shift_right(gx) + gy - _shift_down(gy))
        edges = (wx, _shift_right(wx), wy, _shift_down(wy))  # weights to the right, left, below, above
        for _ in range(p.sor_iterations):
            for colour in colours:
                new_u = du + p.omega * ((_neighbour_sum(du, edges) + b1 - dv * a12) / a11 - du)
                du = torch.where(colour, new_u, du)
                new_v = dv + p.omega * ((_neighbour_sum(dv, edges) + b2 - du * a12) / a22 - dv)
                dv = torch.where(colour, new_v, dv)
    return torch.cat([fu + du, fv + dv], 1)


class PatchInverseSearchFlow(nn.Module):
    """DIS optical flow (coarse-to-fine patch inverse search, densification, variational refinement) in
    PyTorch ops, batched over all pairs, on the device of its inputs; see the module doc for the method.

    Same interface and convention as DISFlow: flows from the reference to each neighbour on BT.601 luma,
    reference(x) ~ neighbour(x + flow(x)), in pixels, channel 0 = dx, 1 = dy.

    preset: "medium" (default, as DISFlow's), "fast" or "ultrafast"; keyword overrides change single
    parameters (DISParams). max_points bounds the patch samples held at once (pairs run in chunks).
    """

    def __init__(self, preset: str = "medium", max_points: int = 64_000_000, **overrides: float) -> None:
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
        self.preset = preset
        self.params = replace(PRESETS[preset], **overrides)
        self.max_points = max_points

    @torch.no_grad()
    def forward(self, reference: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        # reference: (B, 3, H, W), neighbours: (B, N, 3, H, W), both in [0, 1] -> flows (B, N, 2, H, W)
        # float32 throughout, also under the Restorer's fp16 / bf16 autocast: patch sums of squared
        # gradients of 0..255 luma overflow fp16
        with torch.autocast(reference.device.type, enabled=False):
            return self._forward(reference, neighbours)

    def _forward(self, reference: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        b, n, c, h, w = neighbours.shape
        dtype = reference.dtype
        weights = torch.tensor(LUMA, device=reference.device, dtype=torch.float32).view(1, 3, 1, 1)
        ref = (reference.float() * weights).sum(1, keepdim=True).clamp(0, 1) * 255  # (B, 1, H, W)
        nbr = (neighbours.reshape(b * n, c, h, w).float() * weights).sum(1, keepdim=True).clamp(0, 1) * 255
        i0 = ref.unsqueeze(1).expand(b, n, 1, h, w).reshape(b * n, 1, h, w)
        p = self.params
        s = p.finest_scale
        per_pair = max(1, (h >> s) * (w >> s) * p.patch_size**2 // p.patch_stride**2)
        chunk = max(1, self.max_points // per_pair)
        flows = [self.pairs(i0[i : i + chunk], nbr[i : i + chunk]) for i in range(0, b * n, chunk)]
        return torch.cat(flows).reshape(b, n, 2, h, w).to(dtype)

    def pairs(self, i0: torch.Tensor, i1: torch.Tensor) -> torch.Tensor:
        """Flows (M, 2, H, W) for M pairs of luma frames i0, i1 (M, 1, H, W) in [0, 255]."""
        p = self.params
        m, _, h, w = i0.shape
        top = coarsest_scale(h, w, p.patch_size)
        finest = min(p.finest_scale, top)
        # pyramid: levels[k] at 1/2**k, k = finest .. top (OpenCV: integer halving, area averaging)
        levels: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        size = (h >> finest, w >> finest)
        cur0 = F.interpolate(i0, size=size, mode="area") if finest else i0
        cur1 = F.interpolate(i1, size=size, mode="area") if finest else i1
        levels[finest] = (cur0, cur1)
        for k in range(finest + 1, top + 1):
            size = (cur0.shape[-2] // 2, cur0.shape[-1] // 2)
            cur0 = F.interpolate(cur0, size=size, mode="area")
            cur1 = F.interpolate(cur1, size=size, mode="area")
            levels[k] = (cur0, cur1)
        flow = torch.zeros(m, 2, *levels[top][0].shape[-2:], device=i0.device, dtype=i0.dtype)
        per_pass = p.descent_iterations // p.passes
        for k in range(top, finest - 1, -1):
            l0, l1 = levels[k]
            lh, lw = l0.shape[-2:]
            if flow.shape[-2:] != (lh, lw):
                flow = 2 * F.interpolate(flow, size=(lh, lw), mode="bilinear", align_corners=False)
            if lh >= p.patch_size and lw >= p.patch_size:
                patches = _Patches(l0, l1, p.patch_size, p.patch_stride)
                centre = p.patch_size // 2
                u = flow[..., centre :: p.patch_stride, centre :: p.patch_stride]
                u = u[..., : patches.hs, : patches.ws].reshape(m, 2, -1)  # (M, 2, P)
                for k_pass in range(p.passes):
                    for _ in range(p.propagation):
                        u = patches.propagate(u, forward=k_pass % 2 == 0)
                    u = patches.descend(u, per_pass, p.step)
                flow = patches.densify(u, lh, lw)
            if p.refine_iterations > 0:
                flow = variational_refinement(l0, l1, flow, p)
        if finest:
            flow = (2**finest) * F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        return flow
