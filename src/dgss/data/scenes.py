"""Procedural street scenes with pixel-exact labels (Cityscapes trainIds), generated on the fly.

Everything here is ours and redistributable: the demo and tests train on these instead of shipping
dataset images. A scene is a perspective street (road to a vanishing point, sidewalks, building
facades with windows, trees, poles with signs and lights, cars, people) drawn with numpy, plus a
per-pixel distance used to draw nearer objects over farther ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# trainIds used by the generator
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS = (
    range(16)
)
IGNORE = 255


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8 trainIds
    depth: np.ndarray  # (H, W) float32, metres-like distance (larger = farther)


def _noise(rng: np.random.Generator, shape, scale: float) -> np.ndarray:
    return rng.normal(0.0, scale, size=shape)


def _fill(img, lab, mask, color, cls, rng, texture=6.0):
    n = int(mask.sum())
    if n == 0:
        return
    c = np.asarray(color, dtype=np.float32)[None, :] + _noise(rng, (n, 3), texture)
    img[mask] = np.clip(c, 0, 255)
    lab[mask] = cls


def make_scene(seed: int, height: int = 256, width: int = 512) -> Scene:
    """One random street scene; the same seed always gives the same scene."""
    rng = np.random.default_rng(seed)
    H, W = height, width
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.zeros((H, W, 3), np.float32)
    lab = np.full((H, W), IGNORE, np.uint8)
    horizon = H * rng.uniform(0.38, 0.5)
    vx = W * rng.uniform(0.4, 0.6)
    depth = np.full((H, W), 200.0, np.float32)

    # sky: vertical gradient
    sky = yy < horizon
    top, bottom = np.array(rng.uniform([60, 110, 170], [110, 160, 230])), np.array([200, 215, 235])
    t = (yy / max(horizon, 1))[..., None]
    img[sky] = (top * (1 - t) + bottom * t)[sky]
    lab[sky] = SKY

    # ground: distance grows towards the horizon
    ground = ~sky
    dist = np.where(ground, 1.6 * H / np.maximum(yy - horizon, 1.0), 200.0)
    depth[ground] = np.minimum(dist[ground], 200.0)
    half_road = (yy - horizon) * rng.uniform(1.0, 1.4)  # road half-width at row y
    road = ground & (np.abs(xx - vx) < half_road)
    _fill(img, lab, road, rng.uniform(70, 100, 3).repeat(1) * np.ones(3), ROAD, rng, 5)
    lane = road & (np.abs(xx - vx) < 0.02 * (yy - horizon) + 0.5) & ((dist.astype(int) // 3) % 2 == 0)
    _fill(img, lab, lane, (230, 230, 220), ROAD, rng, 3)
    walk_w = rng.uniform(0.35, 0.6)
    sidewalk = ground & ~road & (np.abs(xx - vx) < half_road * (1 + walk_w))
    _fill(img, lab, sidewalk, rng.uniform(120, 160) * np.ones(3) + [10, 0, -5], SIDEWALK, rng, 6)
    terrain = ground & ~road & ~sidewalk
    _fill(img, lab, terrain, (95, 120, 60), TERRAIN, rng, 10)

    # building facades along both sides: they stand on the outer sidewalk edge and rise with the
    # distance from the vanishing line (perspective), in segments of random height and colour
    slope = (half_road / np.maximum(yy - horizon, 1.0))[int(H - 1), 0] * (1 + walk_w)
    off = np.abs(xx - vx)
    edge_y = horizon + off / slope  # outer sidewalk edge row at this column
    for side in (-1, 1):
        x = 4.0
        while x < W:
            seg_w = rng.uniform(0.08, 0.3) * W
            if rng.random() < 0.8:
                k = rng.uniform(0.3, 1.1)
                m = (
                    ((xx - vx) * side >= x)
                    & ((xx - vx) * side < x + seg_w)
                    & (yy > horizon - k * off)
                    & (yy < edge_y)
                    & ~road
                    & ~sidewalk
                )
                color = rng.uniform([90, 70, 60], [200, 180, 160])
                _fill(img, lab, m, color, BUILDING, rng, 8)
                win = m & (((xx - vx) % 16) < 7) & (((yy - horizon) % 20) < 9) & (yy < horizon)
                img[win] = img[win] * 0.4 + np.array([40, 50, 70]) * 0.6
                depth[m] = np.minimum(1.6 * H / np.maximum(edge_y - horizon, 1.0), 200.0)[m]
            x += seg_w

    # trees / vegetation blobs near the horizon line
    for _ in range(rng.integers(2, 6)):
        cx, d = rng.uniform(0, W), rng.uniform(6, 50)
        r = 1.6 * H / d * rng.uniform(0.6, 1.2)
        cy = horizon - r * 0.6
        m = ((xx - cx) ** 2 + ((yy - cy) * 1.2) ** 2 < r * r) & (depth > d) & (np.abs(xx - vx) > 0.5 * (yy - horizon))
        _fill(img, lab, m, rng.uniform([30, 80, 20], [70, 140, 50]), VEGETATION, rng, 12)
        depth[m] = d

    # poles with signs / lights on the sidewalk
    for _ in range(rng.integers(1, 4)):
        side = rng.choice([-1, 1])
        d = rng.uniform(4, 30)
        base = horizon + 1.6 * H / d
        x = vx + side * (base - horizon) * rng.uniform(1.5, 1.8)
        w = max(1.5, 0.06 * (base - horizon))
        hgt = 2.8 * (base - horizon)
        m = (np.abs(xx - x) < w) & (yy > base - hgt) & (yy < base) & (depth > d)
        _fill(img, lab, m, (110, 110, 115), POLE, rng, 4)
        depth[m] = d
        s = max(3.0, 0.35 * (base - horizon))
        sign_top = base - hgt
        m = (np.abs(xx - x) < s) & (yy > sign_top) & (yy < sign_top + 1.4 * s) & (depth > d)
        if rng.random() < 0.5:
            _fill(img, lab, m, (200, 190, 40), SIGN, rng, 6)
        else:
            _fill(img, lab, m, (40, 40, 40), LIGHT, rng, 4)
            img[m & (yy < sign_top + 0.5 * s)] = (230, 40, 30)
        depth[m] = d

    # cars on the road, far to near so nearer ones cover farther ones
    for d in sorted(rng.uniform(5, 40, size=rng.integers(1, 5)), reverse=True):
        base = horizon + 1.6 * H / d
        lane_x = vx + rng.uniform(-0.7, 0.7) * (base - horizon)
        w, h = 1.1 * (base - horizon), 0.7 * (base - horizon)
        body = (np.abs(xx - lane_x) < w / 2) & (yy > base - h) & (yy < base - 0.15 * h)
        cabin = (np.abs(xx - lane_x) < w / 3) & (yy > base - 1.35 * h) & (yy <= base - h)
        wheels = (np.abs(np.abs(xx - lane_x) - w / 3) < w / 9) & (yy >= base - 0.3 * h) & (yy < base)
        m = (body | cabin | wheels) & (depth > d)
        _fill(img, lab, m & ~wheels, rng.uniform([20, 20, 20], [220, 220, 220]), CAR, rng, 6)
        _fill(img, lab, m & wheels, (20, 20, 20), CAR, rng, 3)
        glass = m & cabin
        img[glass] = img[glass] * 0.3 + np.array([120, 150, 180]) * 0.7
        depth[m] = d

    # people on the sidewalk
    for _ in range(rng.integers(0, 4)):
        d = rng.uniform(4, 25)
        base = horizon + 1.6 * H / d
        x = vx + rng.choice([-1, 1]) * (base - horizon) * rng.uniform(1.15, 1.45)
        hgt = 1.1 * (base - horizon)
        m = (((xx - x) / (0.18 * hgt)) ** 2 + ((yy - (base - hgt / 2)) / (hgt / 2)) ** 2 < 1) & (depth > d)
        _fill(img, lab, m, rng.uniform([40, 30, 30], [200, 120, 120]), PERSON, rng, 10)
        depth[m] = d

    img = np.clip(img + _noise(rng, img.shape, 2.0), 0, 255).astype(np.uint8)
    return Scene(img, lab, depth)


def make_scenes(n: int, seed: int = 0, height: int = 256, width: int = 512) -> list[Scene]:
    return [make_scene(seed * 100_003 + i, height, width) for i in range(n)]
