"""World variants of the synthetic subjects: which phenomena beyond the driving models are on.

A *phenomenon* is a property of real captures that the parametric driving models (FLAME, SMPL-X)
do not explain. Each one is a switch of the generators (:mod:`.head`, :mod:`.body`), recorded in
the dataset metadata (``avatarbench_subject.json`` -> ``world``) and described in the dataset card
(``DATASET_CARD.md`` written beside the data; committed copy: ``docs/synthetic_world.md``) with
what it stands for, its magnitude and where the number comes from. The magnitudes are fixed here,
from real-capture evidence, independently of any method result.

Subject names select the world: ``<base>_<world>`` with ``<world>`` one of

- ``clean``: no phenomenon (the world before issue 12; fast CI, the per-phenomenon study's baseline);
- ``full``: every phenomenon of the subject's kind;
- a phenomenon name (``synth_head_a_hair_volume``) or several joined by ``+``
  (``synth_head_a_hair_volume+shoulders``): those alone.

A bare name (``synth_head_a``, ``synth_body``) means :data:`DEFAULT_WORLD`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The world of the bare subject names (synth_head_a, synth_body_a, ...). The ONE line to change
#: when the default subjects switch to the full world (then regenerate the regression references).
DEFAULT_WORLD = "clean"


@dataclass(frozen=True)
class Phenomenon:
    """One switchable departure of the synthetic world from the driving model.

    Attributes:
        name: switch name.
        kind: ``head`` or ``body``.
        stands_for: the real property it models.
        magnitude: the numbers used (human-readable, units).
        source: where the numbers come from (literature / dataset facts / physical argument).
    """

    name: str
    kind: str
    stands_for: str
    magnitude: str
    source: str


HEAD_PHENOMENA: dict[str, Phenomenon] = {p.name: p for p in (
    Phenomenon(
        "tracking_noise", "head",
        "The FLAME parameters a tracker (VHAP) delivers are not the truth: the written flame_param/*.npz are "
        "truth + a temporally smooth per-sequence bias + per-frame jitter on rotation, translation, neck, jaw, "
        "eyes and expression, with an identity error (shape coefficients, static offset). The true parameters "
        "are kept in flame_param_true/ (read by no loader). The images and gt_mesh are rendered from the truth.",
        "per-frame jitter (1 sigma): rotation/neck 0.25 deg, translation 0.4 mm, jaw 0.5 deg, eyes 1.0 deg, "
        "expression 0.04 (first 20 coefficients); smooth bias (amplitude, constant + one slow sinusoid per "
        "sequence): rotation/neck 0.6 deg, translation 1.5 mm (x, y) / 3 mm (depth), jaw 1 deg, eyes 2 deg, "
        "expression 0.08; identity: shape coefficients 0-19 perturbed (sigma 0.15) ~ 1 mm RMS on the neutral "
        "face, static offset recovered at 50 %. The measured tracked-vs-true mesh difference (mm, pixels) is "
        "written into the metadata and the card.",
        "literature: NoW benchmark (Sanyal et al. CVPR 2019) -- the best face trackers/regressors reach "
        "0.9-1.1 mm median scan-to-mesh error (MICA 0.90 mm, DECA 1.09 mm) -> ~1 mm identity error; physical "
        "argument for the jitter: 16-view photometric tracking localises the head to ~0.5 px at ~1800 px "
        "focal length and 1 m (0.3 mm), 0.25 deg over a 10 cm lever is 0.4 mm; depth is the worst-conditioned "
        "direction (2x); gaze from iris landmarks is the least precise (several degrees in appearance-based "
        "gaze estimation, e.g. MPIIGaze/ETH-XGaze ~4-5 deg cross-person; multi-view tracking taken 1 deg + 2 deg bias). "
        "Measured, not tuned: the resulting mesh error is reported, never adjusted to a method result."),
    Phenomenon(
        "hair_volume", "head",
        "Hair is a volume above the scalp, not a texture on FLAME's skull: a shell over the hair region "
        "(closed by a side wall down to the scalp), a fringe over the upper forehead and locks hanging at the "
        "temples and the back that change the silhouette. The shell and fringe are rigid to the head (the "
        "neck joint); the locks swing with a lag proportional to the head's angular velocity.",
        "shell thickness 12 mm at the crown, tapering to 2 mm at the hairline; fringe 4 mm in front of the "
        "forehead, 15 mm down from the front hairline (the forehead creases of expression_detail stay visible below it); 6 locks 50-70 mm long, 12 mm wide; lock lag: tip "
        "rotated by -0.8 x the head rotation change per timestep (at most 0.5 rad).",
        "physical argument: ~100k scalp hairs of ~70 um diameter over ~600 cm2 of scalp form ~10 loosely "
        "packed layers (0.7 mm solid, packing ~5-10 %) -> 7-15 mm for short/medium hair; NeRSemble subjects "
        "(dataset facts: short to long hair, fringes, pony tails) show 1-5 cm of hair outside the skull in the "
        "silhouette. Lock length from the same captures (chin-length strands at the temples)."),
    Phenomenon(
        "expression_detail", "head",
        "Expression-dependent geometry and shading outside FLAME's linear blendshape span: forehead "
        "wrinkles with the brow raise, nasolabial folds and a cheek bulge with the smile, lip roll with "
        "the pucker. Displacements are nonlinear in the expression coefficients (smoothstep of the "
        "activation) and spatially finer than the blendshapes; the shading darkens the creases "
        "(cavity occlusion) at pixel resolution.",
        "forehead: 3 folds, 0.8 mm deep, 9 mm apart, up to 30 % darker in the crease at a full brow raise; "
        "nasolabial fold 2.5 mm deep + cheek bulge 3 mm outward at a full smile, crease up to 35 % darker; "
        "lip roll 2 mm inward at a full pucker. 'Full' = the largest activation of the driving sequences "
        "(expression coefficient 1.2 for brow raise and smile, 1.0 for pucker).",
        "literature (orders of magnitude, not one measured value): dynamic forehead lines are tenths of a "
        "millimetre to ~1 mm deep in skin-surface profilometry; nasolabial folds during a smile are several "
        "millimetres deep, and FLAME's 100-component linear expression space fits 4D scans with a residual "
        "of ~1 mm concentrated in exactly these folds (Li et al., FLAME, SIGGRAPH Asia 2017, Fig. 11/12; "
        "the motivation for the wrinkle/detail models of DECA, Feng et al. 2021)."),
    Phenomenon(
        "shoulders", "head",
        "The capture shows neck, shoulders and clothing below FLAME's neck boundary (NeRSemble frames "
        "include the upper torso; VHAP's foreground masks keep it). A bust (neck continuation, trapezius "
        "slope, shoulders) with a collar band and a shirt is attached to FLAME's root joint: it follows the "
        "global rotation and translation but not the neck, jaw or expression.",
        "biacromial (shoulder) width 38 cm, chest depth 22 cm, neck radius 5.6-6.3 cm at FLAME's boundary, "
        "collar band 2 cm high; bust to 0.40 m below the FLAME origin (fills the bottom of the frame).",
        "dataset facts: anthropometric surveys (ANSUR II, 2012) give a mean biacromial breadth of ~36.5 cm "
        "(women) / ~41 cm (men) and neck circumference ~33 / ~39 cm; NeRSemble's 802-px-high frames show "
        "the shoulders' top (our rig frames ~0.44 m at 1 m, as the DS2 crops)."),
)}

BODY_PHENOMENA: dict[str, Phenomenon] = {p.name: p for p in (
    Phenomenon(
        "tracking_noise", "body",
        "The SMPL-X parameters a multi-view fitter delivers are not the truth: smpl_params.npz = truth + "
        "temporally smooth bias + per-frame jitter on global orientation, translation, body, hand and jaw "
        "pose and expression, plus a betas error. The truth is kept in true_params/smpl_params.npz (read by "
        "no loader); images and gt_mesh are rendered from the truth.",
        "per-frame jitter (1 sigma): global orientation 0.5 deg, translation 5 mm, body joints 1.5 deg, hand "
        "joints 4 deg, jaw 1 deg, expression 0.1; smooth bias amplitude: global orientation 1 deg, "
        "translation 10 mm, body joints 2 deg, hands 5 deg; betas sigma 0.2 (first 10). The measured "
        "tracked-vs-true mesh difference (mm, pixels) is written into the metadata and the card.",
        "literature: multi-view SMPL(-X) fitting on studio captures reaches ~20-40 mm MPJPE (e.g. EasyMocap / "
        "multi-view SMPLify results on Human3.6M and ZJU-MoCap), and AvatarReX/THuman4 ship fitted, not "
        "ground-truth, SMPL-X; our jitter + bias land in that range at the extremities (measured and reported)."),
    Phenomenon(
        "garment_dynamics", "body",
        "The skirt depends on pose AND motion history: its hem is a damped pendulum driven by the root "
        "acceleration (lag and swing), it twists behind the body's yaw rotation and flares with the yaw rate, "
        "on top of the pose-dependent flare with leg spread; sleeves and trousers form folds at the elbows "
        "and knees with the bend angle.",
        "hem pendulum: length 0.5 m (omega = sqrt(g/L) = 4.4 rad/s), damping ratio 0.2, 10 frames per second "
        "of sequence time; hem displacement clamped to 0.25 m; twist lag via the same oscillator on yaw; "
        "centrifugal flare L sin(atan(w^2 r / g)) for yaw rate w, hem radius r = 0.3 m (9 cm at a full turn in "
        "2.5 s); the novel poses are held poses (state at rest); folds: 2.5 cm wavelength, 4 mm amplitude at a 90 deg bend, over "
        "+-6 cm around the joint.",
        "physical argument: a hanging garment is a pendulum of its length (T = 2 pi sqrt(L/g) = 1.4 s for "
        "0.5 m); fabric drag gives light damping; cotton buckling wavelength at a bent joint 2-3 cm with a "
        "few millimetres of amplitude (visible folds in AvatarReX/ActorsHQ captures -- the pose-dependent "
        "detail Animatable Gaussians' pose-conditioned maps are built for)."),
    Phenomenon(
        "long_hair", "body",
        "Long hair hanging from the back of the head that swings: a curved sheet rooted around the back of "
        "the head whose hanging direction is gravity plus a damped pendulum driven by the head's "
        "acceleration (not skinned to any SMPL-X joint below the head).",
        "length 0.30 m, width ~0.16 m (an arc of 200 deg behind the head), 1.5 cm thick offset from the "
        "skull; pendulum omega = sqrt(g/L) = 5.7 rad/s, damping ratio 0.15, swing clamped to 0.9 rad.",
        "dataset facts + physical argument: shoulder-length hair of AvatarReX/THuman4/ActorsHQ subjects; a "
        "hanging lock of length L swings with the pendulum frequency sqrt(g/L)."),
)}

PHENOMENA: dict[str, dict[str, Phenomenon]] = {"head": HEAD_PHENOMENA, "body": BODY_PHENOMENA}


@dataclass(frozen=True)
class World:
    """A set of switched-on phenomena for one subject kind.

    Attributes:
        kind: ``head`` or ``body``.
        phenomena: sorted names of the phenomena switched on.
    """

    kind: str
    phenomena: tuple[str, ...] = ()

    def __post_init__(self):
        known = PHENOMENA.get(self.kind)
        if known is None:
            raise ValueError(f"world kind must be 'head' or 'body', got {self.kind!r}")
        bad = [p for p in self.phenomena if p not in known]
        if bad:
            from avatarbench.errors import ConfigError

            raise ConfigError(f"unknown {self.kind} phenomenon {bad[0]!r} (known: {', '.join(known)})")
        object.__setattr__(self, "phenomena", tuple(sorted(set(self.phenomena))))

    def has(self, name: str) -> bool:
        return name in self.phenomena

    @property
    def tag(self) -> str:
        """``clean``, ``full`` or the ``+``-joined phenomena (used in names and cache folders)."""
        if not self.phenomena:
            return "clean"
        if set(self.phenomena) == set(PHENOMENA[self.kind]):
            return "full"
        return "+".join(self.phenomena)

    @property
    def is_clean(self) -> bool:
        return not self.phenomena

    @classmethod
    def parse(cls, kind: str, tag: str | None) -> "World":
        """``clean`` / ``full`` / ``a+b`` -> World; None = :data:`DEFAULT_WORLD`."""
        tag = DEFAULT_WORLD if tag is None else tag
        if tag == "clean":
            return cls(kind, ())
        if tag == "full":
            return cls(kind, tuple(PHENOMENA[kind]))
        return cls(kind, tuple(t for t in tag.split("+") if t))

    def metadata(self) -> dict:
        """JSON record for ``avatarbench_subject.json``: the tag and every switch of the kind."""
        return {"variant": self.tag, "switches": {n: n in self.phenomena for n in PHENOMENA[self.kind]},
                "phenomena": {n: {"stands_for": p.stands_for, "magnitude": p.magnitude, "source": p.source}
                              for n, p in PHENOMENA[self.kind].items() if n in self.phenomena}}


def split_world(name: str, bases: tuple[str, ...], kind: str) -> tuple[str, World] | None:
    """``synth_head_a_full`` -> (``synth_head_a``, World(full)); a bare base -> the default world;
    None when ``name`` is not ``<base>`` or ``<base>_<world>`` of one of ``bases``.

    Raises:
        ConfigError: the base is known but the world suffix names an unknown phenomenon.
    """
    if name in bases:
        return name, World.parse(kind, None)
    for b in sorted(bases, key=len, reverse=True):
        if name.startswith(b + "_"):
            tag = name[len(b) + 1:]
            first = tag.split("+")[0]
            if tag in ("clean", "full") or first in PHENOMENA[kind]:
                return b, World.parse(kind, tag)
    return None


def world_variants(kind: str) -> list[str]:
    """The per-phenomenon study's columns: clean, each phenomenon alone, full."""
    return ["clean", *PHENOMENA[kind], "full"]


def dataset_card(kind: str, world: World, subject_names: list[str], measurements: dict | None = None) -> str:
    """Markdown card of a generated dataset (written as ``DATASET_CARD.md`` beside the data)."""
    lines = [f"# Synthetic {kind} dataset -- world `{world.tag}`", "",
             f"Subjects: {', '.join(f'`{s}`' for s in subject_names)}. Generated by avatarbench "
             f"(`avatarbench data synth --kind {kind} --world {world.tag}`); deterministic for a seed.", "",
             "| switch | on |", "|---|---|"]
    lines += [f"| `{n}` | {'yes' if world.has(n) else 'no'} |" for n in PHENOMENA[kind]]
    lines.append("")
    for n, p in PHENOMENA[kind].items():
        if not world.has(n):
            continue
        lines += [f"## `{n}`", "", f"**Stands for.** {p.stands_for}", "", f"**Magnitude.** {p.magnitude}", "",
                  f"**Source.** {p.source}", ""]
    if measurements:
        lines += ["## Measured on this dataset", ""]
        for subj, m in measurements.items():
            for k, v in m.items():
                lines.append(f"- `{subj}` {k}: {v}")
        lines.append("")
    if world.is_clean:
        lines += ["No phenomenon: the ground truth is the driving model posed with exactly the written "
                  "parameters (plus the clean world's own extras: teeth, mouth interior, view-dependent "
                  "shading for heads; the flaring, lagging skirt for bodies).", ""]
    return "\n".join(lines)


__all__ = ["DEFAULT_WORLD", "Phenomenon", "HEAD_PHENOMENA", "BODY_PHENOMENA", "PHENOMENA", "World",
           "split_world", "world_variants", "dataset_card"]
