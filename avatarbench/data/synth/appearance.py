"""Procedural, high-frequency head appearance for the synthetic ground truth.

The albedo is evaluated per rasterizer *sample* from the canonical (neutral-pose) surface
coordinates interpolated by :mod:`avatarbench.data.synth.mesh_raster`, so texture detail is much
finer than the mesh (no vertex colours):

- skin: identity tone, low-frequency mottling and redness (cheeks, nose), pores (~1-3 mm),
  freckles (sparse thresholded spots) -- the noise comes from a seamless band-limited texture
  wrapped around the head (:class:`CylindricalNoiseTexture`);
- lips (FLAME ``lips`` vertex mask, smoothed), eyebrows (procedural arcs above the eyes with a
  hair-stripe texture), hair cap with strands and an irregular hair line;
- eyeballs (FLAME ``left_eyeball`` / ``right_eyeball``): sclera with faint veins, iris with
  radial striations and a limbal ring, pupil -- painted around the eyeball's rest-pose forward
  axis (+z), so ``eyes_pose`` rotations are visible;
- teeth (the 120 teeth vertices): ivory with darker gaps between teeth;
- the inside of the head (back faces, e.g. the mouth cavity) is a dark red.

Shading (fixed studio lights in world space): ambient + key + fill Lambert terms and a
Blinn-Phong specular lobe with per-region strength/shininess, so the appearance changes with the
viewpoint. Everything is deterministic given the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from avatarbench.data.synth.mesh_raster import SurfaceSamples

# per-vertex attribute layout of HeadAppearance.vertex_attrs
ATTR_XYZ = slice(0, 3)
ATTR_LEFT_EYE = 3
ATTR_RIGHT_EYE = 4
ATTR_TEETH = 5
ATTR_LIPS = 6
ATTR_DIM = 7

SKIN_TONES = np.array([[0.93, 0.76, 0.64], [0.85, 0.64, 0.50], [0.72, 0.52, 0.38], [0.55, 0.38, 0.27],
                       [0.95, 0.80, 0.70], [0.80, 0.58, 0.44]])
HAIR_COLORS = np.array([[0.10, 0.07, 0.05], [0.30, 0.18, 0.09], [0.62, 0.46, 0.24], [0.45, 0.16, 0.07],
                        [0.05, 0.05, 0.06], [0.50, 0.40, 0.33]])
IRIS_COLORS = np.array([[0.33, 0.18, 0.08], [0.22, 0.40, 0.62], [0.28, 0.45, 0.25], [0.45, 0.32, 0.15],
                        [0.40, 0.45, 0.50]])

#: world-space lights of the synthetic studio (unit vectors toward the light) and intensities
KEY_LIGHT = (np.array([0.45, 0.55, 0.70]) / np.linalg.norm([0.45, 0.55, 0.70]), 0.80)
FILL_LIGHT = (np.array([-0.60, 0.10, 0.60]) / np.linalg.norm([-0.60, 0.10, 0.60]), 0.25)
AMBIENT = 0.32


class CylindricalNoiseTexture:
    """Band-limited noise channels stored as a 2D texture wrapped around the head.

    Texture coordinates of a canonical point ``p``: ``u = azimuth(p) / 2 pi`` around the vertical
    axis through ``axis_xz`` (periodic, seamless because the noise is synthesised by FFT) and
    ``v = (p_y - y_min) / (y_max - y_min)``. Each channel is white noise band-pass filtered to
    wavelengths given in metres (using ``radius`` to convert azimuth to arc length), normalised
    to zero mean and unit variance, and sampled bilinearly.

    Args:
        rng: generator; channels: name -> (lowest, highest) spatial frequency in cycles per metre.
        axis_xz: (2,) cylinder axis; y_range: (y_min, y_max); radius: mean head radius (m).
        size: (H, W) texels.
    """

    def __init__(self, rng: np.random.Generator, channels: dict[str, tuple[float, float]], axis_xz, y_range,
                 radius: float, size: tuple[int, int] = (1024, 2048)):
        H, W = size
        self.names = list(channels)
        self.axis = torch.tensor(np.asarray(axis_xz, dtype=np.float32))
        self.y0, self.y1 = float(y_range[0]), float(y_range[1])
        du = 2 * math.pi * radius / W  # metres per texel along u
        dv = (self.y1 - self.y0) / H
        fu = np.fft.fftfreq(W, d=du)[None, :]
        fv = np.fft.fftfreq(H, d=dv)[:, None]
        fr = np.sqrt(fu ** 2 + fv ** 2)
        tex = np.empty((len(channels), H, W), dtype=np.float32)
        for c, (lo, hi) in enumerate(channels.values()):
            white = rng.normal(size=(H, W))
            band = np.clip((fr - lo * 0.7) / (lo * 0.3), 0, 1) * np.clip((hi * 1.3 - fr) / (hi * 0.3), 0, 1)
            x = np.fft.ifft2(np.fft.fft2(white) * band).real
            tex[c] = (x - x.mean()) / (x.std() + 1e-12)
        self.texture = torch.from_numpy(tex)[None]  # (1, C, H, W)

    def __call__(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """p: (N, 3) canonical points -> name -> (N,) values."""
        az = torch.atan2(p[:, 0] - self.axis[0], p[:, 2] - self.axis[1])  # 0 = facing forward
        gx = az / math.pi  # [-1, 1] (seam at the back of the head)
        gy = ((p[:, 1] - self.y0) / (self.y1 - self.y0)) * 2 - 1
        grid = torch.stack([gx, gy], 1)[None, :, None, :]  # (1, N, 1, 2)
        out = torch.nn.functional.grid_sample(self.texture, grid, mode="bilinear", padding_mode="border",
                                              align_corners=False)[0, :, :, 0]  # (C, N)
        return {name: out[j] for j, name in enumerate(self.names)}


@dataclass
class AppearanceParams:
    """Identity colours and feature sizes (drawn from ``seed`` and a palette ``variant``)."""

    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    freckle_density: float
    brow_thickness: float
    hairline_height: float

    @classmethod
    def draw(cls, seed: int, variant: int = 0) -> "AppearanceParams":
        rng = np.random.default_rng([seed, variant, 77])
        skin = SKIN_TONES[(rng.integers(len(SKIN_TONES)) + 3 * variant) % len(SKIN_TONES)]
        skin = np.clip(skin * rng.uniform(0.95, 1.05, size=3), 0, 1)
        hair = HAIR_COLORS[(rng.integers(len(HAIR_COLORS)) + 2 * variant) % len(HAIR_COLORS)]
        iris = IRIS_COLORS[(rng.integers(len(IRIS_COLORS)) + variant) % len(IRIS_COLORS)]
        lips = np.clip(skin * np.array([0.85, 0.55, 0.55]) + np.array([0.08, 0.0, 0.02]), 0, 1)
        return cls(skin=skin, hair=hair, iris=iris, lips=lips, freckle_density=float(rng.uniform(0.2, 1.0)),
                   brow_thickness=float(rng.uniform(0.8, 1.2)), hairline_height=float(rng.uniform(-0.01, 0.01)))


def _smooth_vertex_weights(w: np.ndarray, faces: np.ndarray, n_iter: int) -> np.ndarray:
    """Average a per-vertex scalar over 1-ring neighbourhoods ``n_iter`` times (soft region edges)."""
    import scipy.sparse as sp

    V = w.shape[0]
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    A = sp.coo_matrix((np.ones(i.shape[0]), (i, j)), shape=(V, V)).tocsr()
    A.data[:] = 1.0
    A = A + sp.identity(V, format="csr")
    A = sp.diags(1.0 / np.asarray(A.sum(1)).ravel()) @ A
    for _ in range(n_iter):
        w = A @ w
    return w


def _smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


class HeadAppearance:
    """Albedo + shading of one synthetic identity.

    Args:
        canonical_verts: (V, 3) neutral-pose vertices of the identity (shape applied, no pose,
            no translation); texture coordinates are these positions.
        faces: (F, 3).
        masks: FLAME vertex-id masks; uses ``left_eyeball``, ``right_eyeball``, ``lips``, ``teeth``
            when present (missing ones fall back to geometric guesses or are skipped).
        seed: texture seed; variant: palette offset so that two identities differ visibly.
        texture_size: (H, W) of the wrapped noise texture (1024 x 2048 ~ 0.3 mm texels).
    """

    def __init__(self, canonical_verts, faces, masks: dict[str, np.ndarray], seed: int, variant: int = 0,
                 texture_size: tuple[int, int] = (1024, 2048)):
        cv = np.asarray(canonical_verts, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        V = cv.shape[0]
        self.params = AppearanceParams.draw(seed, variant)
        rng = np.random.default_rng([seed, variant, 1])

        def ids(name):
            m = masks.get(name)
            return None if m is None or len(m) == 0 else np.asarray(m, dtype=np.int64)

        attrs = np.zeros((V, ATTR_DIM), dtype=np.float32)
        attrs[:, ATTR_XYZ] = cv
        left, right, teeth, lips = ids("left_eyeball"), ids("right_eyeball"), ids("teeth"), ids("lips")
        self.eye_centers = np.zeros((2, 3))
        self.eye_radius = np.full(2, 0.012)
        for k, (col, vid) in enumerate([(ATTR_LEFT_EYE, left), (ATTR_RIGHT_EYE, right)]):
            if vid is not None:
                attrs[vid, col] = 1.0
                self.eye_centers[k] = cv[vid].mean(0)
                self.eye_radius[k] = float(np.linalg.norm(cv[vid] - self.eye_centers[k], axis=1).mean())
        self.has_eyes = left is not None and right is not None
        if teeth is not None:
            attrs[teeth, ATTR_TEETH] = 1.0
        lip_w = np.zeros(V)
        if lips is not None:
            lip_w[lips] = 1.0
            lip_w = _smooth_vertex_weights(lip_w, faces, 2)
            self.lip_center = cv[lips].mean(0)
        else:
            self.lip_center = None
        attrs[:, ATTR_LIPS] = np.clip(lip_w * 1.6 - 0.3, 0, 1)
        self.vertex_attrs = torch.from_numpy(attrs)  # (V, ATTR_DIM)

        # head frame (canonical): centre and size of the skull from the bounding box
        lo, hi = cv.min(0), cv.max(0)
        self.head_top = float(hi[1])
        center = [(lo[0] + hi[0]) / 2, hi[1] - 0.45 * (hi[0] - lo[0]), (lo[2] + hi[2]) / 2 - 0.01]
        self.head_center = torch.tensor(center, dtype=torch.float32)
        if not self.has_eyes:  # rough guess: eyes ~ 38 % down from the top, 3.2 cm apart
            ey = hi[1] - 0.38 * (hi[1] - lo[1])
            self.eye_centers = np.array([[0.032, ey, hi[2] - 0.03], [-0.032, ey, hi[2] - 0.03]])
        self.eye_y = float(self.eye_centers[:, 1].mean())
        self.front_z = float(hi[2])
        # below this canonical height back faces are shaded two-sided (inside of the neck tube)
        self.neck_inside_y = float(lo[1] + 0.45 * (self.eye_y - lo[1]))

        radius = float(0.25 * ((hi[0] - lo[0]) + (hi[2] - lo[2])))
        self.noise = CylindricalNoiseTexture(
            rng, {"pores": (350.0, 900.0), "mottle": (8.0, 40.0), "freckle": (90.0, 180.0),
                  "strands": (40.0, 120.0), "hairline": (30.0, 80.0)},
            axis_xz=(float(self.head_center[0]), float(self.head_center[2])), y_range=(lo[1] - 0.01, hi[1] + 0.01),
            radius=radius, size=texture_size)
        self.iris_noise = torch.tensor(rng.uniform(0, 2 * math.pi, size=3), dtype=torch.float32)

    # ------------------------------------------------------------------ albedo
    def _skin(self, p: torch.Tensor, nz: dict[str, torch.Tensor]) -> torch.Tensor:
        prm = self.params
        base = torch.tensor(prm.skin, dtype=torch.float32)
        mott = nz["mottle"]
        col = base[None] * (1.0 + 0.025 * mott[:, None])
        # redness on the cheeks and nose tip
        nose = torch.tensor([0.0, self.eye_y - 0.035, self.front_z], dtype=torch.float32)
        red = torch.exp(-((p - nose) ** 2).sum(1) / (2 * 0.012 ** 2))
        for ex in (self.eye_centers[0, 0], self.eye_centers[1, 0]):
            cheek = torch.tensor([float(ex) * 1.25, self.eye_y - 0.035, self.front_z - 0.03], dtype=torch.float32)
            red = red + 0.8 * torch.exp(-((p - cheek) ** 2).sum(1) / (2 * 0.018 ** 2))
        col = col * (1 - 0.10 * red[:, None]) + torch.tensor([0.75, 0.25, 0.22]) * 0.10 * red[:, None]
        # pores: small dark specks
        col = col * (1.0 - 0.06 * torch.relu(nz["pores"])[:, None])
        # freckles: sparse brown spots, denser around the nose/cheeks
        fr = _smoothstep(1.5, 2.1, nz["freckle"]) * prm.freckle_density
        fr = fr * torch.exp(-((p[:, 1] - (self.eye_y - 0.03)) ** 2) / (2 * 0.03 ** 2))
        col = col * (1 - 0.35 * fr[:, None]) + torch.tensor([0.45, 0.26, 0.15]) * 0.35 * fr[:, None]
        return col

    def _brow_weight(self, p: torch.Tensor) -> torch.Tensor:
        w = torch.zeros(p.shape[0])
        th = self.params.brow_thickness
        for k in range(2):
            ex, ey, ez = (float(v) for v in self.eye_centers[k])
            side = 1.0 if ex > 0 else -1.0
            u = (p[:, 0] - ex) * side  # > 0 toward the temple
            centre_y = ey + 0.020 + 0.005 * (1 - (u / 0.022) ** 2)
            half = 0.0042 * th * (1.0 - 0.45 * ((u + 0.018) / 0.045).clamp(0, 1))
            along = _smoothstep(-0.026, -0.018, u) * (1 - _smoothstep(0.020, 0.028, u))
            across = 1 - _smoothstep(0.6, 1.0, (p[:, 1] - centre_y).abs() / half)
            front = _smoothstep(ez - 0.02, ez - 0.005, p[:, 2])
            w = torch.maximum(w, along * across * front)
        return w

    def _hair_weight(self, p: torch.Tensor, nz: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.head_center
        d = p - c
        cos_front = d[:, 2] / d[:, [0, 2]].norm(dim=1).clamp(min=1e-6)  # 1 facing forward, -1 back
        front_line = self.eye_y + 0.065 + self.params.hairline_height
        side_line = self.eye_y + 0.02
        back_line = self.eye_y - 0.07
        line = torch.where(cos_front > 0, side_line + (front_line - side_line) * cos_front,
                           side_line + (back_line - side_line) * (-cos_front))
        jag = 0.0018 * nz["hairline"]
        return _smoothstep(-0.002, 0.002, p[:, 1] - line + jag)

    def _hair(self, p: torch.Tensor, nz: dict[str, torch.Tensor]) -> torch.Tensor:
        base = torch.tensor(self.params.hair, dtype=torch.float32)
        c = self.head_center
        d = p - c
        # strands run from the crown outward: stripes across the azimuth, stretched along it
        az = torch.atan2(d[:, 0], d[:, 2])
        stripe = torch.sin(az * 140.0 + 3.0 * nz["strands"])
        var = 1.0 + 0.18 * stripe + 0.10 * nz["strands"]
        return base[None] * var[:, None].clamp(0.5, 1.5)

    def _eyes(self, p: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """p: (N, 3) canonical positions on eyeball ``which`` (N,) in {0, 1}."""
        ctr = torch.tensor(self.eye_centers, dtype=torch.float32)[which]
        d = torch.nn.functional.normalize(p - ctr, dim=1)
        ang = torch.acos(d[:, 2].clamp(-1, 1))  # angle from the forward (+z) axis
        phi = torch.atan2(d[:, 1], d[:, 0])
        sclera = torch.tensor([0.93, 0.90, 0.87]) * (1 - 0.05 * (torch.sin(phi * 9 + ang * 20) > 0.93).float()[:, None])
        sclera = sclera * (1 - 0.15 * _smoothstep(0.6, 1.4, ang))[:, None]  # shadowed toward the sides
        iris_col = torch.tensor(self.params.iris, dtype=torch.float32)[None]
        stri = 0.75 + 0.25 * torch.sin(phi * 37 + self.iris_noise[0]) * torch.sin(ang * 40 + self.iris_noise[1])
        iris = iris_col * stri[:, None]
        iris_r, pupil_r = 0.50, 0.19
        limbal = _smoothstep(iris_r - 0.10, iris_r, ang)
        iris = iris * (1 - 0.6 * limbal[:, None])
        w_iris = 1 - _smoothstep(iris_r - 0.02, iris_r + 0.02, ang)
        w_pupil = 1 - _smoothstep(pupil_r - 0.02, pupil_r + 0.02, ang)
        col = sclera * (1 - w_iris[:, None]) + iris * w_iris[:, None]
        return col * (1 - w_pupil[:, None]) + torch.tensor([0.03, 0.03, 0.03]) * w_pupil[:, None]

    def _teeth(self, p: torch.Tensor) -> torch.Tensor:
        gap = (torch.cos(p[:, 0] * (2 * math.pi / 0.0075)) > 0.93).float()
        return torch.tensor([0.92, 0.88, 0.78])[None] * (1 - 0.35 * gap[:, None])

    def albedo(self, attrs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample albedo and specular parameters.

        Args:
            attrs: (N, ATTR_DIM) interpolated vertex attributes.
        Returns:
            albedo (N, 3), specular strength (N,), shininess (N,).
        """
        p = attrs[:, ATTR_XYZ].contiguous()
        nz = self.noise(p)
        col = self._skin(p, nz)
        ks = torch.full((p.shape[0],), 0.10)
        shin = torch.full((p.shape[0],), 28.0)

        lips = attrs[:, ATTR_LIPS].clamp(0, 1)
        lip_col = torch.tensor(self.params.lips, dtype=torch.float32)[None] * (1 + 0.05 * nz["mottle"])[:, None]
        col = col * (1 - lips[:, None]) + lip_col * lips[:, None]
        ks = ks + 0.15 * lips
        shin = shin + 30 * lips

        brow = self._brow_weight(p)
        # fine hair strokes across the brow
        brow = brow * (0.8 + 0.2 * torch.sin(p[:, 0] * 2600.0 + p[:, 1] * 900.0 + 1.5 * nz["strands"]))
        hair_col = torch.tensor(self.params.hair, dtype=torch.float32)[None]
        col = col * (1 - 0.9 * brow[:, None]) + hair_col * 0.9 * brow[:, None]

        hw = self._hair_weight(p, nz)
        col = col * (1 - hw[:, None]) + self._hair(p, nz) * hw[:, None]
        ks = ks * (1 - hw) + 0.14 * hw
        shin = shin * (1 - hw) + 14 * hw

        eye = (attrs[:, ATTR_LEFT_EYE] > 0.5) | (attrs[:, ATTR_RIGHT_EYE] > 0.5)
        if bool(eye.any()):
            which = (attrs[eye, ATTR_RIGHT_EYE] > 0.5).long()
            col[eye] = self._eyes(p[eye], which)
            ks[eye] = 0.55
            shin[eye] = 180.0
        teeth = attrs[:, ATTR_TEETH] > 0.5
        if bool(teeth.any()):
            col[teeth] = self._teeth(p[teeth])
            ks[teeth] = 0.25
            shin[teeth] = 60.0
        return col.clamp(0, 1), ks, shin

    # ------------------------------------------------------------------ shading
    def shade(self, smp: SurfaceSamples) -> torch.Tensor:
        """``shade_fn`` for :func:`~avatarbench.data.synth.mesh_raster.render_mesh`: (N, 3) RGB."""
        col, ks, shin = self.albedo(smp.attrs)
        n = smp.normals
        v = smp.view_dirs
        front = smp.front_facing
        diffuse = torch.full((n.shape[0],), AMBIENT)
        spec = torch.zeros(n.shape[0])
        for ldir, inten in (KEY_LIGHT, FILL_LIGHT):
            l = torch.tensor(ldir, dtype=torch.float32)[None]
            ndl = (n * l).sum(1)
            diffuse = diffuse + inten * ndl.clamp(min=0)
            h = torch.nn.functional.normalize(l + v, dim=1)
            spec = spec + inten * (n * h).sum(1).clamp(min=0).pow(shin) * (ndl > 0).float()
        rgb = col * diffuse[:, None] + (ks * spec)[:, None]
        # back faces: the mouth cavity is a dark, unlit red; deep in the neck (seen through the open
        # neck ring from the lower cameras) the surface is two-sided, lit like the outside
        facing_away = (-(smp.face_normals * v).sum(1)).clamp(0, 1)
        inside = torch.tensor([0.24, 0.07, 0.07])[None] * (0.6 + 0.4 * facing_away)[:, None]
        neck = _smoothstep(self.neck_inside_y + 0.01, self.neck_inside_y - 0.01, smp.attrs[:, 1])[:, None]
        if bool((~front).any()):
            back = ~front
            nb = -n[back]
            d_b = torch.full((nb.shape[0],), AMBIENT)
            for ldir, inten in (KEY_LIGHT, FILL_LIGHT):
                d_b = d_b + inten * (nb * torch.tensor(ldir, dtype=torch.float32)[None]).sum(1).clamp(min=0)
            two_sided = col[back] * d_b[:, None]
            inside[back] = inside[back] * (1 - neck[back]) + two_sided * neck[back]
        rgb = torch.where(front[:, None], rgb, inside)
        return rgb.clamp(0, 1)
