"""Vectorised anti-aliased 2-D drawing for the synthetic world (pure torch, whole clips at once).

Every shape is drawn for all frames in one call: its geometry is given per frame as ``[T]``
tensors (or plain floats, broadcast over time), and the result is a :class:`Coverage`, a 0..1
coverage map restricted to the shape's bounding box over the whole clip, which :func:`paint`
composites onto a canvas ``[T, H, W, 3]``. Static shapes (all-float geometry) are computed once,
as ``[1, h, w]``, and broadcast over time.

Coordinates are in pixels with the origin at the top-left corner; pixel ``(i, j)`` covers
``[j, j+1) x [i, i+1)``, so its centre is ``(j + 0.5, i + 0.5)``. Edges are anti-aliased with a
one-pixel linear ramp of the signed distance, so a shape's visible edge is within a pixel of its
true geometric edge (rectangles get their exact area coverage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Canvas", "Coverage", "box_alpha", "circle_alpha", "ellipse_alpha", "paint"]

Number = float | torch.Tensor


def _per_frame(x: Number, t: int) -> torch.Tensor:
    """A float or ``[T]`` value as a float32 ``[1, 1, 1]`` or ``[T, 1, 1]`` tensor for broadcasting."""
    v = torch.as_tensor(x, dtype=torch.float32)
    if v.dim() == 0:
        return v.view(1, 1, 1)
    if v.shape != (t,):
        raise ValueError(f"per-frame geometry has shape {tuple(v.shape)}; expected a float or [T]=[{t}].")
    return v.view(t, 1, 1)


def _first_px(v: Number, n: int) -> int:
    """First pixel index (with a one-pixel margin for the anti-aliasing ramp) at or before min(v), in [0, n]."""
    return min(max(math.floor(float(torch.as_tensor(v).min())) - 1, 0), n)


def _end_px(v: Number, n: int) -> int:
    """One past the last pixel index (with a one-pixel margin) at or after max(v), in [0, n]."""
    return min(max(math.ceil(float(torch.as_tensor(v).max())) + 1, 0), n)


@dataclass(frozen=True)
class Coverage:
    """A shape's coverage inside its bounding box.

    Attributes:
        alpha: ``[T, h, w]`` (or ``[1, h, w]`` for a static shape) coverage in 0..1.
        top: row of the box's first pixel in the image.
        left: column of the box's first pixel in the image.
    """

    alpha: torch.Tensor
    top: int
    left: int

    def scaled(self, factor: Number) -> Coverage:
        """The same shape with its coverage multiplied by a float or a ``[T]`` per-frame opacity."""
        f = torch.as_tensor(factor, dtype=torch.float32)
        return Coverage(self.alpha * (f.view(-1, 1, 1) if f.dim() else f), self.top, self.left)

    def full(self, height: int, width: int) -> torch.Tensor:
        """The coverage pasted into a full ``[T, H, W]`` (or ``[1, H, W]``) zero map."""
        out = torch.zeros(self.alpha.shape[0], height, width)
        out[:, self.top : self.top + self.alpha.shape[1], self.left : self.left + self.alpha.shape[2]] = self.alpha
        return out


class Canvas:
    """Pixel-centre grids for a ``T x H x W`` clip.

    Args:
        num_frames: T, the number of pixel frames.
        height: H in pixels.
        width: W in pixels.
    """

    def __init__(self, num_frames: int, height: int, width: int) -> None:
        self.t, self.h, self.w = num_frames, height, width
        self.ys = torch.arange(height, dtype=torch.float32) + 0.5  # [H]
        self.xs = torch.arange(width, dtype=torch.float32) + 0.5  # [W]

    def window(self, x_lo: Number, x_hi: Number, y_lo: Number, y_hi: Number) -> tuple[int, int, int, int]:
        """Integer pixel box ``(top, bottom, left, right)`` covering ``[x_lo, x_hi] x [y_lo, y_hi]`` in every frame."""
        top, left = _first_px(y_lo, self.h), _first_px(x_lo, self.w)
        return top, max(top, _end_px(y_hi, self.h)), left, max(left, _end_px(x_hi, self.w))

    def grids(self, box: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel centres inside ``box``: ``ys [1, h, 1]`` and ``xs [1, 1, w]``."""
        top, bottom, left, right = box
        return self.ys[top:bottom].view(1, -1, 1), self.xs[left:right].view(1, 1, -1)


def circle_alpha(canvas: Canvas, cx: Number, cy: Number, r: Number) -> Coverage:
    """Coverage of a disc.

    Args:
        canvas: the grids.
        cx: centre x in pixels, float or ``[T]``.
        cy: centre y in pixels, float or ``[T]``.
        r: radius in pixels, float or ``[T]``.

    Returns:
        The disc's :class:`Coverage`.
    """
    t = canvas.t
    cx_, cy_, r_ = _per_frame(cx, t), _per_frame(cy, t), _per_frame(r, t)
    box = canvas.window(cx_ - r_, cx_ + r_, cy_ - r_, cy_ + r_)
    ys, xs = canvas.grids(box)
    d = torch.sqrt((xs - cx_) ** 2 + (ys - cy_) ** 2)
    return Coverage((r_ + 0.5 - d).clamp_(0.0, 1.0), box[0], box[2])


def ellipse_alpha(canvas: Canvas, cx: Number, cy: Number, rx: Number, ry: Number) -> Coverage:
    """Coverage of an axis-aligned ellipse (first-order signed distance to its boundary).

    Args:
        canvas: the grids.
        cx: centre x in pixels, float or ``[T]``.
        cy: centre y in pixels, float or ``[T]``.
        rx: horizontal semi-axis in pixels, float or ``[T]``.
        ry: vertical semi-axis in pixels, float or ``[T]`` (below half a pixel the ellipse fades as a
            thin line of proportional weight).

    Returns:
        The ellipse's :class:`Coverage`.
    """
    t = canvas.t
    cx_, cy_ = _per_frame(cx, t), _per_frame(cy, t)
    rx_, ry_ = _per_frame(rx, t).clamp_min(1e-3), _per_frame(ry, t).clamp_min(1e-3)
    box = canvas.window(cx_ - rx_, cx_ + rx_, cy_ - ry_, cy_ + ry_)
    ys, xs = canvas.grids(box)
    dx, dy = xs - cx_, ys - cy_
    # f = (dx/rx)^2 + (dy/ry)^2 - 1 and signed distance ~ f / |grad f|: exact to first order at the
    # boundary (where the one-pixel ramp lives) and -inf at the centre (fully inside).
    f = (dx / rx_) ** 2 + (dy / ry_) ** 2 - 1.0
    grad = 2.0 * torch.sqrt((dx / rx_**2) ** 2 + (dy / ry_**2) ** 2)
    alpha = (0.5 - f / grad.clamp_min(1e-6)).clamp_(0.0, 1.0)
    return Coverage(alpha * (2.0 * ry_).clamp(max=1.0), box[0], box[2])


def box_alpha(canvas: Canvas, x0: Number, y0: Number, x1: Number, y1: Number) -> Coverage:
    """Exact pixel coverage of an axis-aligned rectangle ``[x0, x1] x [y0, y1]``.

    Args:
        canvas: the grids.
        x0: left edge in pixels, float or ``[T]``.
        y0: top edge in pixels, float or ``[T]``.
        x1: right edge in pixels, float or ``[T]``.
        y1: bottom edge in pixels, float or ``[T]``.

    Returns:
        The rectangle's :class:`Coverage`.
    """
    t = canvas.t
    x0_, y0_, x1_, y1_ = (_per_frame(v, t) for v in (x0, y0, x1, y1))
    box = canvas.window(x0_, x1_, y0_, y1_)
    ys, xs = canvas.grids(box)
    cov_x = (torch.minimum(x1_, xs + 0.5) - torch.maximum(x0_, xs - 0.5)).clamp_(0.0, 1.0)
    cov_y = (torch.minimum(y1_, ys + 0.5) - torch.maximum(y0_, ys - 0.5)).clamp_(0.0, 1.0)
    return Coverage(cov_x * cov_y, box[0], box[2])


def paint(image: torch.Tensor, cov: Coverage, rgb: torch.Tensor | tuple[float, float, float]) -> torch.Tensor:
    """Composite a colour over an image with "over" blending, in place.

    Args:
        image: ``[T, H, W, 3]`` canvas, modified in place.
        cov: where and how much to paint.
        rgb: ``[3]`` colour, or ``[T, 3]`` per-frame colour.

    Returns:
        ``image`` (for chaining).
    """
    _, h, w = cov.alpha.shape
    if h == 0 or w == 0:
        return image
    region = image[:, cov.top : cov.top + h, cov.left : cov.left + w]  # a view: edits land in image
    rgb = torch.as_tensor(rgb, dtype=torch.float32).view(-1, 1, 1, 3)
    region.lerp_(rgb.expand_as(region), cov.alpha.unsqueeze(-1).expand_as(region[..., :1]))
    return image
