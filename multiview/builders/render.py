"""A small CPU ray caster for multi-camera scenes of primitive shapes.

Everything is vectorised over a batch of scenes, their cameras and every pixel at once (torch on the CPU), so a
few thousand 64 px scenes render in minutes on two cores. Rays are intersected analytically with spheres,
boxes, cylinders and cones, and by sphere tracing with tori; the ground is the plane ``y = 0``. Shading is
Lambertian plus ambient, with a cast-shadow test toward a directional light.

Conventions (world space, right-handed, ``y`` up):
- An object is a unit shape in its local frame (it fits in ``[-1, 1]^3``), rotated by ``rotation`` ([3, 3]),
  scaled uniformly by ``scale`` and moved to ``centre``: ``world = centre + scale * rotation @ local``.
- A camera at ``azimuth`` / ``elevation`` (degrees) and ``distance`` from ``look_at`` sits at
  ``look_at + distance * (cos(el) sin(az), sin(el), cos(el) cos(az))``; it looks at ``look_at`` with world
  ``y`` up and a vertical field of view ``fov`` (degrees). Images are square, row 0 at the top.

Examples:
    >>> scene = SceneBatch.single(shapes=["sphere"], centres=[[0, 0.5, 0]], scales=[0.5], colours=[[1, 0, 0]])
    >>> cams = ring_cameras(4, elevation=25.0, distance=4.0, fov=40.0)
    >>> out = render(scene, cameras_to_tensors([cams]), size=32)
    >>> out["rgb"].shape, out["object"].shape, out["mask"].unique().tolist()
    (torch.Size([1, 4, 32, 32, 3]), torch.Size([1, 4, 32, 32]), [0, 1])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange

SHAPES = ("sphere", "cube", "cylinder", "cone", "torus")
TEXTURES = ("plain", "stripes", "checker", "dots")
TORUS_MAJOR, TORUS_MINOR = 0.7, 0.3  # local units: the torus fits in [-1, 1] x [-0.3, 0.3] x [-1, 1]
# half-height of each unit shape in its local frame (what rests on the ground when it is upright)
HALF_HEIGHT = {"sphere": 1.0, "cube": 1.0, "cylinder": 1.0, "cone": 1.0, "torus": TORUS_MINOR}
# radius of a sphere around each unit shape (local units), used to skip rays that cannot hit it
BOUND_RADIUS = {
    "sphere": 1.0 + 1e-3,
    "cube": math.sqrt(3.0) + 1e-3,
    "cylinder": math.sqrt(2.0) + 1e-3,
    "cone": math.sqrt(2.0) + 1e-3,
    "torus": 1.0 + 1e-3,
}
_EPS = 1e-4
_MISS = float("inf")


@dataclass
class SceneBatch:
    """Objects and lights of ``S`` scenes with up to ``M`` objects each (slot ``shape == -1`` is empty).

    Fields: ``shape [S, M]`` long (index into ``SHAPES``), ``centre [S, M, 3]``, ``rotation [S, M, 3, 3]``,
    ``scale [S, M]``, ``colour [S, M, 3]`` (linear RGB in [0, 1]), ``texture [S, M]`` long (index into
    ``TEXTURES``), ``texture_freq [S, M]``, ``light_dir [S, 3]`` (unit, toward the light), ``ambient [S]``,
    ``ground [S, 2, 3]`` (the two checker colours of the ground), ``ground_tile [S]`` (checker size),
    ``sky [S, 2, 3]`` (horizon and zenith colours).
    """

    shape: torch.Tensor
    centre: torch.Tensor
    rotation: torch.Tensor
    scale: torch.Tensor
    colour: torch.Tensor
    texture: torch.Tensor
    texture_freq: torch.Tensor
    light_dir: torch.Tensor
    ambient: torch.Tensor
    ground: torch.Tensor
    ground_tile: torch.Tensor
    sky: torch.Tensor

    @staticmethod
    def single(
        shapes: Sequence[str],
        centres: Sequence[Sequence[float]],
        scales: Sequence[float],
        colours: Sequence[Sequence[float]],
        textures: Sequence[str] | None = None,
        yaws_deg: Sequence[float] | None = None,
        light_dir: Sequence[float] = (0.4, 0.8, 0.45),
        ambient: float = 0.35,
    ) -> SceneBatch:
        """One scene (``S = 1``) from plain lists; handy in tests and notebooks."""
        m = len(shapes)
        for name in shapes:
            if name not in SHAPES:
                raise ValueError(f"shape {name!r} is not one of {SHAPES}")
        textures = textures or ["plain"] * m
        yaws = torch.tensor(yaws_deg or [0.0] * m, dtype=torch.float32)
        light = torch.tensor(light_dir, dtype=torch.float32)
        return SceneBatch(
            shape=torch.tensor([[SHAPES.index(s) for s in shapes]]),
            centre=torch.tensor([centres], dtype=torch.float32),
            rotation=rotation_matrices(yaws, torch.zeros(m))[None],
            scale=torch.tensor([scales], dtype=torch.float32),
            colour=torch.tensor([colours], dtype=torch.float32),
            texture=torch.tensor([[TEXTURES.index(t) for t in textures]]),
            texture_freq=torch.full((1, m), 3.0),
            light_dir=(light / light.norm())[None],
            ambient=torch.tensor([ambient]),
            ground=torch.tensor([[[0.55, 0.55, 0.5], [0.45, 0.45, 0.42]]]),
            ground_tile=torch.tensor([0.5]),
            sky=torch.tensor([[[0.75, 0.8, 0.85], [0.45, 0.6, 0.85]]]),
        )


def rotation_matrices(yaw_deg: torch.Tensor, tilt_deg: torch.Tensor) -> torch.Tensor:
    """Rotation ``Ry(yaw) @ Rx(tilt)`` for each object: ``[...]`` angles in degrees -> ``[..., 3, 3]``."""
    yaw, tilt = torch.deg2rad(yaw_deg.float()), torch.deg2rad(tilt_deg.float())
    cy, sy, ct, st = torch.cos(yaw), torch.sin(yaw), torch.cos(tilt), torch.sin(tilt)
    zero, one = torch.zeros_like(cy), torch.ones_like(cy)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*cy.shape, 3, 3)
    rx = torch.stack([one, zero, zero, zero, ct, -st, zero, st, ct], -1).reshape(*cy.shape, 3, 3)
    return ry @ rx


# ----------------------------------------------------------------------------------------------- cameras


def camera_pose(
    azimuth: float, elevation: float, distance: float, fov: float, look_at: Sequence[float] = (0.0, 0.0, 0.0)
) -> dict:
    """One camera as the JSON-ready dict written to ``cams.json`` (angles in degrees)."""
    if not 0.0 < fov < 180.0:
        raise ValueError(f"fov must be in (0, 180) degrees, got {fov}")
    if distance <= 0:
        raise ValueError(f"distance must be > 0, got {distance}")
    az, el = math.radians(azimuth), math.radians(elevation)
    offset = (math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az))
    position = [float(c + distance * o) for c, o in zip(look_at, offset)]
    return {
        "azimuth": float(azimuth),
        "elevation": float(elevation),
        "distance": float(distance),
        "position": position,
        "look_at": [float(c) for c in look_at],
        "fov": float(fov),
        "up": [0.0, 1.0, 0.0],
    }


def ring_cameras(
    k: int,
    elevation: float,
    distance: float,
    fov: float,
    azimuth_offset: float = 0.0,
    look_at: Sequence[float] = (0.0, 0.0, 0.0),
) -> list[dict]:
    """``k`` cameras evenly spaced in azimuth on a ring at one elevation, all looking at ``look_at``."""
    if k < 1:
        raise ValueError(f"number of cameras must be >= 1, got {k}")
    return [camera_pose((azimuth_offset + 360.0 * i / k) % 360.0, elevation, distance, fov, look_at) for i in range(k)]


def cameras_to_tensors(cameras: Sequence[Sequence[dict]]) -> dict[str, torch.Tensor]:
    """Per-scene lists of camera dicts -> ``position [S, K, 3]``, ``look_at [S, K, 3]``, ``fov [S, K]``."""
    counts = {len(c) for c in cameras}
    if len(counts) != 1:
        raise ValueError(f"every scene needs the same number of cameras, got counts {sorted(counts)}")
    return {
        "position": torch.tensor([[c["position"] for c in cams] for cams in cameras], dtype=torch.float32),
        "look_at": torch.tensor([[c["look_at"] for c in cams] for cams in cameras], dtype=torch.float32),
        "fov": torch.tensor([[c["fov"] for c in cams] for cams in cameras], dtype=torch.float32),
    }


def camera_basis(position: torch.Tensor, look_at: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Forward, right and up unit vectors of cameras: ``[..., 3]`` each (world ``y`` up)."""
    forward = _unit(look_at - position)
    world_up = torch.tensor([0.0, 1.0, 0.0]).expand_as(forward)
    right = torch.linalg.cross(forward, world_up, dim=-1)
    # a camera looking straight down has no defined right vector: fall back to world x
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    right = _unit(torch.where(degenerate, torch.tensor([1.0, 0.0, 0.0]).expand_as(right), right))
    up = torch.linalg.cross(right, forward, dim=-1)
    return forward, right, up


def camera_rays(cams: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions of every pixel's ray: ``[S, K, P, 3]`` each, ``P = size * size``."""
    forward, right, up = camera_basis(cams["position"], cams["look_at"])
    half = torch.tan(torch.deg2rad(cams["fov"]) / 2)[..., None, None]  # [S, K, 1, 1]
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    ys, xs = torch.meshgrid(-centres, centres, indexing="ij")  # row 0 is the top of the image
    xs, ys = xs.reshape(1, 1, -1, 1), ys.reshape(1, 1, -1, 1)
    dirs = forward[:, :, None] + half * (xs * right[:, :, None] + ys * up[:, :, None])
    origins = cams["position"][:, :, None].expand_as(dirs)
    return origins, _unit(dirs)


def project(points: torch.Tensor, camera: dict, size: int) -> torch.Tensor:
    """World points ``[N, 3]`` -> pixel coordinates ``[N, 2]`` (column, row) in a ``size`` image of ``camera``.

    Points behind the camera come out as NaN. Pixel centres sit at integer coordinates (0 .. size - 1).
    """
    position = torch.tensor(camera["position"], dtype=torch.float32)
    look_at = torch.tensor(camera["look_at"], dtype=torch.float32)
    forward, right, up = camera_basis(position, look_at)
    rel = points.float() - position
    depth = rel @ forward
    half = math.tan(math.radians(camera["fov"]) / 2)
    x, y = (rel @ right) / (depth * half), (rel @ up) / (depth * half)
    pix = torch.stack([(x + 1) / 2 * size - 0.5, (1 - y) / 2 * size - 0.5], -1)
    return torch.where((depth > 0)[:, None], pix, torch.full_like(pix, float("nan")))


# ----------------------------------------------------------------------------------------------- shapes
# Each intersector works in an object's local frame: origins o and directions d [..., 3] (d not unit: the ray
# parameter t is the WORLD distance because d_local = R^T d / scale). It returns t [...] (inf on a miss) and
# the local surface normal [..., 3] (not normalised).


def _sphere(o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b, c = (d * d).sum(-1), (o * d).sum(-1), (o * o).sum(-1) - 1
    t = _near_root(a, b, c)
    return t, o + _finite(t)[..., None] * d


def _box(o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t1, t2 = (-1 - o) / d, (1 - o) / d
    t_near, t_far = torch.minimum(t1, t2), torch.maximum(t1, t2)
    t_enter, axis = t_near.max(-1)
    t_exit = t_far.min(-1).values
    hit = (t_exit >= t_enter) & (t_enter > _EPS)
    normal = -torch.sign(d) * torch.nn.functional.one_hot(axis, 3).to(d.dtype)
    return torch.where(hit, t_enter, _MISS), normal


def _cylinder(o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = d.unbind(-1)
    t_side = _near_root(dx * dx + dz * dz, ox * dx + oz * dz, ox * ox + oz * oz - 1)
    y_side = oy + _finite(t_side) * dy
    t_side = torch.where(y_side.abs() <= 1, t_side, _MISS)
    t_cap, cap_sign = _caps(o, d, radius_at=lambda y: torch.ones_like(y), ys=(-1.0, 1.0))
    p = o + _finite(t_side)[..., None] * d
    side_normal = torch.stack([p[..., 0], torch.zeros_like(oy), p[..., 2]], -1)
    return _nearest(t_side, side_normal, t_cap, cap_sign)


def _cone(o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apex at y = 1, base of radius 1 at y = -1: x^2 + z^2 = k (1 - y)^2 with k = 1/4."""
    k = 0.25
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = d.unbind(-1)
    q = 1 - oy
    a = dx * dx + dz * dz - k * dy * dy
    b = ox * dx + oz * dz + k * q * dy
    c = ox * ox + oz * oz - k * q * q
    # a may be negative (steep rays): test both roots and keep the nearest valid one on the finite cone
    disc = b * b - a * c
    root = torch.sqrt(disc.clamp_min(0))
    a_safe = torch.where(a.abs() < 1e-9, torch.full_like(a, 1e-9), a)
    best = torch.full_like(a, _MISS)
    for t in ((-b - root) / a_safe, (-b + root) / a_safe):
        y = oy + t * dy
        ok = (disc >= 0) & (t > _EPS) & (y >= -1) & (y <= 1)
        best = torch.where(ok & (t < best), t, best)
    p = o + _finite(best)[..., None] * d
    side_normal = torch.stack([p[..., 0], k * (1 - p[..., 1]), p[..., 2]], -1)
    t_cap, cap_normal = _caps(o, d, radius_at=lambda y: torch.ones_like(y), ys=(-1.0,))
    return _nearest(best, side_normal, t_cap, cap_normal)


def _torus(o: torch.Tensor, d: torch.Tensor, steps: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Sphere tracing of the torus distance field, started where the ray enters the bounding sphere."""
    d_len = d.norm(dim=-1)
    a, b, c = (d * d).sum(-1), (o * d).sum(-1), (o * o).sum(-1) - 1.0
    disc = b * b - a * c
    root = torch.sqrt(disc.clamp_min(0))
    # start at the bounding sphere's entry, or at the origin for rays that start inside it (shadow rays)
    t = ((-b - root) / a).clamp_min(0)
    alive = (disc >= 0) & ((-b + root) / a > _EPS)
    for _ in range(steps):
        sdf = _torus_sdf(o + t[..., None] * d)
        t = t + torch.where(alive, sdf / d_len, torch.zeros_like(t))
    p = o + t[..., None] * d
    hit = alive & (_torus_sdf(p).abs() < 2e-3) & ((p * p).sum(-1) < 1.05)
    ring = torch.nn.functional.normalize(p * torch.tensor([1.0, 0.0, 1.0]), dim=-1) * TORUS_MAJOR
    return torch.where(hit, t, _MISS), p - ring


def _torus_sdf(p: torch.Tensor) -> torch.Tensor:
    radial = torch.sqrt(p[..., 0] ** 2 + p[..., 2] ** 2) - TORUS_MAJOR
    return torch.sqrt(radial**2 + p[..., 1] ** 2) - TORUS_MINOR


_INTERSECT = {"sphere": _sphere, "cube": _box, "cylinder": _cylinder, "cone": _cone, "torus": _torus}


def _near_root(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Smallest root > eps of ``a t^2 + 2 b t + c`` (a > 0), inf where there is none."""
    disc = b * b - a * c
    root = torch.sqrt(disc.clamp_min(0))
    a = a.clamp_min(1e-12)
    t0, t1 = (-b - root) / a, (-b + root) / a
    t = torch.where(t0 > _EPS, t0, t1)
    return torch.where((disc >= 0) & (t > _EPS), t, _MISS)


def _caps(o, d, radius_at, ys) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest hit with the flat discs ``y = y_i`` of radius ``radius_at(y_i)``; normal points along +-y."""
    dy = torch.where(d[..., 1].abs() < 1e-9, torch.full_like(d[..., 1], 1e-9), d[..., 1])
    best, normal = torch.full_like(dy, _MISS), torch.zeros_like(o)
    for y in ys:
        t = (y - o[..., 1]) / dy
        p = o + t[..., None] * d
        r = radius_at(torch.full_like(t, y))
        ok = (t > _EPS) & (p[..., 0] ** 2 + p[..., 2] ** 2 <= r * r) & (t < best)
        best = torch.where(ok, t, best)
        normal = torch.where(ok[..., None], torch.tensor([0.0, math.copysign(1.0, y), 0.0]), normal)
    return best, normal


def _nearest(t_a, n_a, t_b, n_b) -> tuple[torch.Tensor, torch.Tensor]:
    take_b = t_b < t_a
    return torch.where(take_b, t_b, t_a), torch.where(take_b[..., None], n_b, n_a)


def _finite(t: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# ----------------------------------------------------------------------------------------------- scene


def intersect_scene(scene: SceneBatch, origins: torch.Tensor, dirs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Nearest object hit of every ray: origins / unit dirs ``[S, K, P, 3]``.

    Returns ``t [S, K, P]`` (inf on a miss), ``slot [S, K, P]`` long (-1 on a miss), world ``normal`` and
    ``local`` hit point ``[S, K, P, 3]``.

    Work is spent only where it can matter: for each object slot, the rays that pass through its bounding
    sphere are gathered (a few per cent of the image for small objects) and only those meet the shape's
    intersector.
    """
    lead = origins.shape[:-1]
    s, per_scene = lead[0], lead[1:].numel()
    o_all, d_all = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    ray_scene = torch.arange(s).repeat_interleave(per_scene)  # [R] the scene of each ray
    t_best = torch.full((o_all.shape[0],), _MISS)
    slot = torch.full((o_all.shape[0],), -1, dtype=torch.long)
    normal, local = torch.zeros_like(o_all), torch.zeros_like(o_all)
    bound = torch.tensor([BOUND_RADIUS[name] for name in SHAPES])
    for m in range(scene.shape.shape[1]):
        shape_m = scene.shape[:, m]
        radius = torch.where(shape_m >= 0, bound[shape_m.clamp_min(0)] * scene.scale[:, m], 0.0)
        candidates = _hits_sphere(o_all - scene.centre[ray_scene, m], d_all, radius[ray_scene])
        for shape_id, name in enumerate(SHAPES):
            rays = torch.nonzero(candidates & (shape_m[ray_scene] == shape_id)).flatten()
            if rays.numel() == 0:
                continue
            scn = ray_scene[rays]
            rot, inv_scale = scene.rotation[scn, m], (1.0 / scene.scale[scn, m])[:, None]  # [N, 3, 3], [N, 1]
            o_local = torch.einsum("nji,nj->ni", rot, o_all[rays] - scene.centre[scn, m]) * inv_scale
            d_local = torch.einsum("nji,nj->ni", rot, d_all[rays]) * inv_scale
            t, n_local = _INTERSECT[name](o_local, d_local)
            closer = t < t_best[rays]
            rays, t, rot = rays[closer], t[closer], rot[closer]
            t_best[rays], slot[rays] = t, m
            normal[rays] = _unit(torch.einsum("nij,nj->ni", rot, n_local[closer]))
            local[rays] = o_local[closer] + t[:, None] * d_local[closer]
    return {
        "t": t_best.reshape(lead),
        "slot": slot.reshape(lead),
        "normal": normal.reshape(*lead, 3),
        "local": local.reshape(*lead, 3),
    }


def _hits_sphere(o: torch.Tensor, d: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Whether unit-direction rays ``[R, 3]`` from ``o`` (relative to the centre) meet spheres ``radius [R]``."""
    b = (o * d).sum(-1)
    disc = b * b - (o * o).sum(-1) + radius * radius
    return (disc >= 0) & (-b + torch.sqrt(disc.clamp_min(0)) > _EPS) & (radius > 0)


def _texture(kind: torch.Tensor, freq: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Brightness pattern in [0, 1] of procedural textures at local points ``p [..., 3]``."""
    f = freq[..., None] * math.pi
    stripes = (torch.sin(f[..., 0] * p[..., 1]) > 0).float()
    checker = ((torch.sin(f * p) > 0).sum(-1) % 2).float()
    frac = torch.frac(p * freq[..., None] * 0.5 + 100.0) - 0.5  # offset keeps frac's argument positive
    dots = (frac.norm(dim=-1) > 0.3).float()
    pattern = torch.ones_like(stripes)
    for i, value in enumerate((pattern, stripes, checker, dots)):
        pattern = torch.where(kind == i, value, pattern)
    return pattern


def _gather_slot(values: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """Per-ray object attribute: values ``[S, M, ...]`` and slot ``[S, K, P]`` -> ``[S, K, P, ...]``."""
    s, k, p = slot.shape
    flat = rearrange(slot.clamp_min(0), "s k p -> s (k p)")
    idx = flat.reshape(s, k * p, *([1] * (values.dim() - 2))).expand(s, k * p, *values.shape[2:])
    out = torch.gather(values, 1, idx)
    return out.reshape(s, k, p, *values.shape[2:])


def render(
    scene: SceneBatch,
    cams: dict[str, torch.Tensor],
    size: int = 64,
    shadows: bool = True,
    supersample: int = 1,
) -> dict[str, torch.Tensor]:
    """Render every camera of every scene.

    Args:
        scene: ``S`` scenes.
        cams: ``position [S, K, 3]``, ``look_at [S, K, 3]``, ``fov [S, K]`` (see ``cameras_to_tensors``).
        size: output image side in pixels.
        shadows: cast shadows from the directional light (one extra intersection pass).
        supersample: render at ``size * supersample`` and average down (anti-aliasing).

    Returns:
        ``rgb`` uint8 ``[S, K, size, size, 3]``; ``object`` long ``[S, K, size, size]``: the object slot seen
        at each pixel centre (-1 for ground and sky, from the full-resolution pass's pixel centres when
        ``supersample`` is 1, else from the centre sub-sample); ``depth`` float ``[S, K, size, size]``;
        ``mask`` uint8 ``[S, K, size, size]``: what each pixel shows as a label, 0 for ground and sky and
        ``1 + slot`` for an object (see :func:`majority_labels`: with ``supersample`` the label most of the
        pixel's sub-samples show, like the averaged colour, rather than the one sub-sample ``object`` reads).
    """
    if size < 1 or supersample < 1:
        raise ValueError(f"size and supersample must be >= 1, got size={size}, supersample={supersample}")
    full = size * supersample
    origins, dirs = camera_rays(cams, full)
    hit = intersect_scene(scene, origins, dirs)
    s, k, _ = hit["t"].shape
    # the ground plane y = 0, only where it is nearer than every object
    t_ground = torch.where(dirs[..., 1] < -1e-6, -origins[..., 1] / dirs[..., 1].clamp_max(-1e-6), _MISS)
    on_ground = (t_ground < hit["t"]) & torch.isfinite(t_ground)
    on_object = (hit["slot"] >= 0) & ~on_ground
    t = torch.where(on_ground, t_ground, hit["t"])
    point = origins + _finite(t)[..., None] * dirs

    albedo = _object_albedo(scene, hit) * on_object[..., None]
    ground = _ground_albedo(scene, point)
    albedo = torch.where(on_ground[..., None], ground, albedo)
    normal = torch.where(on_ground[..., None], torch.tensor([0.0, 1.0, 0.0]), hit["normal"])

    light = scene.light_dir[:, None, None, :]  # [S, 1, 1, 3]
    diffuse = (normal * light).sum(-1).clamp_min(0)
    lit = on_object | on_ground
    if shadows:
        start = point + normal * 1e-3
        blocked = intersect_scene(scene, start, light.expand_as(start).contiguous())["slot"] >= 0
        diffuse = torch.where(blocked & lit, torch.zeros_like(diffuse), diffuse)
    ambient = scene.ambient[:, None, None]
    colour = albedo * (ambient + (1 - ambient) * diffuse)[..., None]
    colour = torch.where(lit[..., None], colour, _sky(scene, dirs))

    grid = {"h": full, "w": full}
    rgb = rearrange(colour, "s k (h w) c -> (s k) c h w", **grid)
    if supersample > 1:
        rgb = torch.nn.functional.avg_pool2d(rgb, supersample)
    rgb = rearrange(rgb, "(s k) c h w -> s k h w c", s=s, k=k)
    rgb8 = (rgb.clamp(0, 1) ** (1 / 2.2) * 255 + 0.5).to(torch.uint8)  # linear -> display gamma
    centre = supersample // 2
    obj = torch.where(on_object, hit["slot"], -1)
    obj = rearrange(obj, "s k (h w) -> s k h w", **grid)[..., centre::supersample, centre::supersample]
    depth = rearrange(t, "s k (h w) -> s k h w", **grid)[..., centre::supersample, centre::supersample]
    labels = rearrange(torch.where(on_object, hit["slot"] + 1, 0), "s k (h w) -> s k h w", **grid)
    mask = majority_labels(labels, supersample, n_labels=scene.shape.shape[1] + 1)
    return {"rgb": rgb8, "object": obj, "depth": depth, "mask": mask}


def majority_labels(labels: torch.Tensor, factor: int, n_labels: int) -> torch.Tensor:
    """Labels of ``factor x factor`` blocks: ``[..., H * factor, W * factor]`` ints in ``[0, n_labels)`` ->
    uint8 ``[..., H, W]``, the label most of a block's sub-samples carry; a tie goes to the lowest label.

    Examples:
        >>> majority_labels(torch.tensor([[0, 2], [2, 1]]), 2, n_labels=3)
        tensor([[2]], dtype=torch.uint8)
    """
    if n_labels > 256:
        raise ValueError(f"a uint8 mask holds at most 256 labels, got n_labels={n_labels}")
    if factor == 1:
        return labels.to(torch.uint8)
    lead, (h, w) = labels.shape[:-2], labels.shape[-2:]
    blocks = rearrange(labels.reshape(-1, h, w), "n (h a) (w b) -> n h w (a b)", a=factor, b=factor)
    votes = torch.nn.functional.one_hot(blocks, n_labels).sum(-2)  # [N, H, W, n_labels]
    # argmax returns the first of equal maxima: ties go to the lower label (background, then the main object)
    return votes.argmax(-1).to(torch.uint8).reshape(*lead, h // factor, w // factor)


def _object_albedo(scene: SceneBatch, hit: dict[str, torch.Tensor]) -> torch.Tensor:
    colour = _gather_slot(scene.colour, hit["slot"])
    kind = _gather_slot(scene.texture, hit["slot"])
    freq = _gather_slot(scene.texture_freq, hit["slot"])
    pattern = _texture(kind, freq, hit["local"])
    # dark parts of a texture keep the hue (0.4 x colour) so the colour class stays readable
    return colour * (0.4 + 0.6 * pattern)[..., None]


def _ground_albedo(scene: SceneBatch, point: torch.Tensor) -> torch.Tensor:
    tile = scene.ground_tile[:, None, None]
    cell = (torch.floor(point[..., 0] / tile) + torch.floor(point[..., 2] / tile)) % 2
    light, dark = scene.ground[:, None, None, 0], scene.ground[:, None, None, 1]
    return torch.where(cell[..., None] > 0, dark, light)


def _sky(scene: SceneBatch, dirs: torch.Tensor) -> torch.Tensor:
    up = dirs[..., 1:2].clamp(0, 1)
    return scene.sky[:, None, None, 0] * (1 - up) + scene.sky[:, None, None, 1] * up
