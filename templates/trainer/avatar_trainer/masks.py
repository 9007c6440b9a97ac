"""Face-weighted loss: a soft face mask per training view, at latent resolution.

A face detector's box runs from the brows to the chin and misses hair, ears and the jaw line,
which are part of a likeness too. The mask is therefore an ellipse around the box grown sideways
and upwards (hair) and a little down (chin), with a smooth edge (the analytic equivalent of a
blurred binary mask), so the loss does not learn a hard seam. Outside it the loss keeps the weight
`--mask-weight` (the background still trains: clothes and light are not forgotten, just weighted
down); 1.0 turns masking off.

The weighted loss is normalised by the sum of the weights, so its scale stays that of the plain
MSE (all weights 1 → exactly the mean) and --lr means the same with or without masks.
"""

from __future__ import annotations

# How far the face ellipse reaches beyond the detector box, in box widths/heights.
GROW_SIDES = 0.25  # each side: ears, hair at the temples
GROW_TOP = 0.45  # hair
GROW_BOTTOM = 0.15  # chin and jaw
FEATHER = 0.35  # soft edge: the weight falls from 1 to the background over this much of the radius


def face_mask(box, resolution: int, size: int, background: float):
    """(1, 1, size, size) float32 weights in [background, 1] for a square crop of `resolution` px.

    `box` = (x0, y0, x1, y1) of the face in crop pixels (may reach outside the crop); None gives
    uniform weights 1.0 (no face known: the image trains as it always did).
    """
    import torch

    if box is None or background >= 1.0:
        return torch.ones(1, 1, size, size)
    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)
    left, right = x0 - GROW_SIDES * bw, x1 + GROW_SIDES * bw
    top, bottom = y0 - GROW_TOP * bh, y1 + GROW_BOTTOM * bh
    cx, cy = (left + right) / 2, (top + bottom) / 2
    rx, ry = (right - left) / 2, (bottom - top) / 2
    # Latent cell centres in crop pixels.
    step = resolution / size
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) * step
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    d = torch.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    # 1 inside the ellipse, smoothstep down to 0 at (1 + FEATHER) of its radius.
    t = ((d - 1.0) / FEATHER).clamp(0.0, 1.0)
    inside = 1.0 - t * t * (3.0 - 2.0 * t)
    weights = background + (1.0 - background) * inside
    return weights.float().reshape(1, 1, size, size)


def weighted_mse(pred, target, weights=None):
    """Mean squared error weighted per latent pixel, normalised by the weights' sum.

    `weights` (N, 1, h, w) broadcast over channels; None is the plain `F.mse_loss`.
    """
    import torch.nn.functional as F

    if weights is None:
        return F.mse_loss(pred, target)
    w = weights.expand_as(pred)
    return ((pred - target) ** 2 * w).sum() / w.sum()
