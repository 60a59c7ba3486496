"""The toy world's scenes: objects, events, their sampling and their rendering to images and videos.

A :class:`Scene` is a background class (beach, forest, ...) with a few flat-coloured objects (shape, colour,
size, position) and at most one event per object (move, grow, shrink, recolour, appear, disappear) inside a
time window given in seconds. Everything is plain numpy and seeded: :func:`sample_scene` draws a scene from a
``numpy.random.Generator``; :func:`render_image` and :func:`render_video` are pure functions of the scene.

Geometry. Positions and sizes are fractions of the image side, so one scene renders at any size. At render
size ``S`` an object's centre is the pixel ``(floor(x * S), floor(y * S))`` and its radius is the integer
``round(SIZES[size] * S)``; a shape covers the pixels ``(i, j)`` with ``f((i - cx) / r, (j - cy) / r) <= 1``
for the shape's gauge ``f``. Boxes are ``[x0, y0, x1, y1]`` in pixel edges (``x1``, ``y1`` exclusive), the
tight box of the pixels the object covers. Objects never overlap (the sampler keeps their whole paths apart),
so every box is also tight on the pixels visible in the rendered frame.

Time. Frame ``t`` of a video at ``fps`` is the picture at time ``t / fps``. An event with window
``[start, end)`` owns the frames ``t`` with ``start <= t / fps < end``; with ``t0`` the first and ``k`` the
number of those frames, the event's progress at frame ``t`` is ``p = clip((t - t0 + 1) / k, 0, 1)``: ``0``
before the window, reaching ``1`` on its last frame. So the frames of the window are exactly the frames that
differ from the frame before them (for that object), which is what temporal-grounding labels need.
:func:`sample_scene` keeps windows short enough that every step is visible at :data:`REFERENCE_SIZE` and
above: a move advances at least one pixel per frame, a grow or shrink changes the integer radius every
frame, a recolour or fade changes the pixel values every frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

SCENES: tuple[str, ...] = ("beach", "forest", "city", "snow", "night", "desert", "underwater", "room")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")
# Saturated colours, chosen to stay far from every (desaturated) background palette; tests check the margin.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 200, 40),
    "blue": (30, 70, 235),
    "yellow": (245, 225, 30),
    "purple": (140, 40, 190),
    "orange": (255, 140, 0),
    "pink": (255, 110, 200),
}
SIZES: dict[str, float] = {"small": 0.06, "large": 0.14}
EVENT_KINDS: tuple[str, ...] = ("move", "grow", "shrink", "recolour", "appear", "disappear")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
REFERENCE_SIZE = 64
# Longest window, in frames, for kinds whose per-frame change does not depend on a sampled distance.
MAX_FADE_FRAMES = 10
MAX_RECOLOUR_FRAMES = 16
_MARGIN = 0.02
_EPS = 1e-9


@dataclass
class ToyObject:
    """One object of a scene, in its state at time 0.

    Attributes:
        shape: one of :data:`SHAPES`.
        colour: one of :data:`COLOURS`.
        size: ``"small"`` or ``"large"`` (radius :data:`SIZES` as a fraction of the image side).
        x: centre, fraction of the image width.
        y: centre, fraction of the image height.
    """

    shape: str
    colour: str
    size: str
    x: float
    y: float


@dataclass
class Event:
    """A change of one object inside the time window ``[start, end)`` seconds.

    Attributes:
        object: index of the object in ``Scene.objects``.
        kind: one of :data:`EVENT_KINDS`. ``grow`` takes a small object to large, ``shrink`` the reverse;
            ``appear`` fades the object in (invisible before), ``disappear`` fades it out (invisible after).
        start: window start in seconds.
        end: window end in seconds (exclusive).
        direction: for ``move``, one of :data:`DIRECTIONS`.
        distance: for ``move``, the distance travelled as a fraction of the image side.
        colour: for ``recolour``, the new colour.
    """

    object: int
    kind: str
    start: float
    end: float
    direction: str | None = None
    distance: float = 0.0
    colour: str | None = None


@dataclass
class Scene:
    """A background class, objects and events; renders at any size and frame rate.

    Attributes:
        scene: background class, one of :data:`SCENES`.
        objects: the objects, drawn in this order.
        events: at most one per object.
        texture_seed: seed of the background texture.
        num_frames: frame count the events were sampled for (the default of :func:`render_video`).
        fps: frame rate the events were sampled for.
    """

    scene: str
    objects: list[ToyObject]
    events: list[Event] = field(default_factory=list)
    texture_seed: int = 0
    num_frames: int = 1
    fps: float = 1.0

    @property
    def duration(self) -> float:
        """Length of the video in seconds (``num_frames / fps``)."""
        return self.num_frames / self.fps

    def event_of(self, index: int) -> Event | None:
        """The event of object ``index``, or None."""
        for event in self.events:
            if event.object == index:
                return event
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Rebuild a scene written by :meth:`to_dict`."""
        return cls(
            scene=data["scene"],
            objects=[ToyObject(**o) for o in data["objects"]],
            events=[Event(**e) for e in data.get("events", [])],
            texture_seed=int(data.get("texture_seed", 0)),
            num_frames=int(data.get("num_frames", 1)),
            fps=float(data.get("fps", 1.0)),
        )


@dataclass
class Video:
    """A rendered video and its per-frame annotations.

    Attributes:
        frames: ``(T, S, S, 3)`` uint8 RGB.
        boxes: ``(T, N, 4)`` int64 ``[x0, y0, x1, y1]`` pixel edges per frame and object (zeros when hidden).
        visible: ``(T, N)`` bool, whether the object is drawn in the frame.
        times: ``(T,)`` float seconds, ``t / fps``.
        fps: frame rate.
    """

    frames: np.ndarray
    boxes: np.ndarray
    visible: np.ndarray
    times: np.ndarray
    fps: float


# ----------------------------------------------------------------------------------------------- time


def window_frames(event: Event, fps: float, num_frames: int | None = None) -> range:
    """Frames ``t`` of the event's window: ``start <= t / fps < end`` (clipped to ``num_frames``)."""
    t0 = math.ceil(event.start * fps - _EPS)
    t1 = math.ceil(event.end * fps - _EPS)
    t0 = max(t0, 0)
    if num_frames is not None:
        t0, t1 = min(t0, num_frames), min(t1, num_frames)
    return range(t0, max(t0, t1))


def progress(event: Event, frame: int, fps: float) -> float:
    """Progress of the event at a frame: 0 before its window, ``(t - t0 + 1) / k`` inside, 1 after."""
    t0 = math.ceil(event.start * fps - _EPS)
    k = math.ceil(event.end * fps - _EPS) - t0
    if k <= 0:
        return 1.0 if frame >= t0 else 0.0
    return min(max((frame - t0 + 1) / k, 0.0), 1.0)


# ------------------------------------------------------------------------------------------- geometry


def radius_px(size: str, image_size: int) -> int:
    """Integer radius in pixels of a size class at an image size."""
    return max(1, int(round(SIZES[size] * image_size)))


def _gauge_inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether normalised offsets ``(u, v)`` (radius 1, y down) lie inside the shape.

    Every shape contains at least one axis point at distance 1, so that growing the integer radius by one
    always adds a pixel.
    """
    if shape == "circle":
        return u * u + v * v <= 1.0 + _EPS
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0 + _EPS
    if shape == "triangle":
        return (v <= 1.0 + _EPS) & (np.abs(u) <= (v + 1.0) / 2.0 + _EPS)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0 + _EPS
    if shape == "cross":
        arm = 1.0 / 3.0 + _EPS
        inside = np.maximum(np.abs(u), np.abs(v)) <= 1.0 + _EPS
        return inside & ((np.abs(u) <= arm) | (np.abs(v) <= arm))
    if shape == "star":
        # Five-pointed star, one point straight up; polar equation of the edge between an outer vertex
        # (radius 1, angle 0) and the next inner vertex (radius 0.5, angle 36 degrees).
        inner, half = 0.5, math.pi / 5
        theta = np.arctan2(v, u) + math.pi / 2
        beta = np.mod(theta, 2 * half)
        alpha = np.where(beta <= half, beta, 2 * half - beta)
        edge = inner * math.sin(half) / (np.sin(alpha) + inner * np.sin(half - alpha))
        return np.sqrt(u * u + v * v) <= edge + _EPS
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


@lru_cache(maxsize=1024)
def shape_mask(shape: str, radius: int) -> np.ndarray:
    """Boolean ``(2r+1, 2r+1)`` mask of a shape of integer radius ``r`` centred on the middle pixel."""
    offsets = np.arange(-radius, radius + 1, dtype=np.float64) / radius
    v, u = np.meshgrid(offsets, offsets, indexing="ij")
    mask = _gauge_inside(shape, u, v)
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=1024)
def _mask_extent(shape: str, radius: int) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(shape_mask(shape, radius))
    return (
        int(cols.min()) - radius,
        int(rows.min()) - radius,
        int(cols.max()) - radius,
        int(rows.max()) - radius,
    )


@dataclass(frozen=True)
class ObjectState:
    """An object's rendered state at one frame: integer centre and radius, RGB colour and opacity."""

    shape: str
    cx: int
    cy: int
    radius: int
    rgb: tuple[int, int, int]
    alpha: float

    @property
    def visible(self) -> bool:
        return self.alpha > 0.0

    def box(self) -> tuple[int, int, int, int]:
        """Tight ``[x0, y0, x1, y1]`` of the covered pixels (unclipped)."""
        dx0, dy0, dx1, dy1 = _mask_extent(self.shape, self.radius)
        return self.cx + dx0, self.cy + dy0, self.cx + dx1 + 1, self.cy + dy1 + 1


def object_state(scene: Scene, index: int, frame: int, fps: float, size: int) -> ObjectState:
    """State of object ``index`` at ``frame`` (time ``frame / fps``) rendered at ``size`` pixels."""
    obj = scene.objects[index]
    event = scene.event_of(index)
    x, y = obj.x * size, obj.y * size
    radius = radius_px(obj.size, size)
    rgb = np.asarray(COLOURS[obj.colour], dtype=np.float64)
    alpha = 0.0 if event is not None and event.kind == "appear" else 1.0
    if event is not None:
        p = progress(event, frame, fps)
        if event.kind == "move":
            dx, dy = DIRECTIONS[event.direction]
            x += dx * event.distance * size * p
            y += dy * event.distance * size * p
        elif event.kind in ("grow", "shrink"):
            r0 = radius_px("small" if event.kind == "grow" else "large", size)
            r1 = radius_px("large" if event.kind == "grow" else "small", size)
            radius = int(round(r0 + (r1 - r0) * p))
        elif event.kind == "recolour":
            rgb = rgb + (np.asarray(COLOURS[event.colour], dtype=np.float64) - rgb) * p
        elif event.kind == "appear":
            alpha = p
        elif event.kind == "disappear":
            alpha = 1.0 - p
        else:
            raise ValueError(f"unknown event kind {event.kind!r}; expected one of {EVENT_KINDS}")
    rgb_int = tuple(int(c) for c in np.round(rgb))
    return ObjectState(obj.shape, math.floor(x + _EPS), math.floor(y + _EPS), radius, rgb_int, alpha)


# ---------------------------------------------------------------------------------------- backgrounds


def _noise(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    return rng.uniform(-amplitude, amplitude, (size, size, 1))


def render_background(scene: str, size: int, seed: int = 0) -> np.ndarray:
    """The background texture of a scene class as ``(size, size, 3)`` uint8.

    Each class has its own layout and a desaturated palette (see the module docstring for the colour margin).
    """
    rng = np.random.default_rng(seed)
    s = size
    yy, xx = np.meshgrid(np.arange(s) / s, np.arange(s) / s, indexing="ij")
    yy, xx = yy[..., None], xx[..., None]
    img = np.zeros((s, s, 3), dtype=np.float64)

    def put(mask: np.ndarray, rgb: tuple[float, float, float]) -> None:
        np.copyto(img, np.broadcast_to(np.asarray(rgb, dtype=np.float64), img.shape), where=mask)

    if scene == "beach":
        horizon = rng.uniform(0.28, 0.38)
        shore = horizon + rng.uniform(0.12, 0.18)
        put(yy >= 0, (210, 198, 165))
        put(yy < shore, (75, 115, 145))
        wave = np.sin(xx * rng.uniform(18, 30) + yy * 60 + rng.uniform(0, 6.3)) > 0.6
        put((yy < shore) & wave, (100, 140, 165))
        put(yy < horizon, (170, 205, 225))
        img += _noise(rng, s, 5)
    elif scene == "forest":
        phase = rng.uniform(0, 6.3, 3)
        mottle = np.sin(xx * 11 + phase[0]) * np.sin(yy * 9 + phase[1]) + 0.5 * np.sin(
            (xx + yy) * 23 + phase[2]
        )
        img[:] = np.asarray((38, 72, 42)) + mottle * np.asarray((8, 12, 8))
        for cx in rng.uniform(0, 1, rng.integers(3, 6)):
            put(np.abs(xx - cx) < rng.uniform(0.02, 0.04), (72, 52, 38))
        img += _noise(rng, s, 4)
    elif scene == "city":
        put(yy >= 0, (180, 186, 196))
        x = 0.0
        while x < 1.0:
            width = rng.uniform(0.12, 0.25)
            top = rng.uniform(0.15, 0.55)
            grey = rng.uniform(95, 140)
            block = (xx >= x) & (xx < x + width) & (yy >= top)
            put(block, (grey, grey, grey + 5))
            windows = block & (np.mod(xx - x, 0.06) < 0.025) & (np.mod(yy - top, 0.08) < 0.035)
            put(windows, (205, 200, 160))
            x += width
        img += _noise(rng, s, 4)
    elif scene == "snow":
        phase = rng.uniform(0, 6.3, 2)
        hills = 0.5 + 0.5 * np.sin(xx * rng.uniform(5, 9) + phase[0]) * np.sin(yy * 4 + phase[1])
        img[:] = np.asarray((242, 245, 250)) - hills * np.asarray((30, 28, 18))
        img += _noise(rng, s, 4)
    elif scene == "night":
        img[:] = np.asarray((12, 16, 40)) + yy * np.asarray((12, 14, 30))
        img += _noise(rng, s, 3)
        stars = rng.uniform(0, 1, (s, s, 1)) < 0.02
        put(stars, (215, 215, 195))
        mx, my, mr = rng.uniform(0.15, 0.85), rng.uniform(0.1, 0.3), rng.uniform(0.05, 0.08)
        put((xx - mx) ** 2 + (yy - my) ** 2 < mr**2, (228, 228, 205))
    elif scene == "desert":
        phase = rng.uniform(0, 6.3)
        dunes = np.sin(xx * rng.uniform(6, 10) + phase + np.sin(yy * 7) * 1.5) * np.sin(yy * 13)
        img[:] = np.asarray((208, 168, 115)) + dunes[..., :1] * np.asarray((14, 14, 12))
        img += _noise(rng, s, 4)
    elif scene == "underwater":
        img[:] = np.asarray((18, 75, 100)) + (1 - yy) * np.asarray((10, 25, 25))
        rays = np.sin((xx - 0.4 * yy) * rng.uniform(20, 30) + rng.uniform(0, 6.3)) > 0.85
        img += rays * np.asarray((6, 12, 12))
        img += _noise(rng, s, 4)
    elif scene == "room":
        floor = rng.uniform(0.6, 0.72)
        put(yy >= 0, (192, 176, 156))
        put(yy >= floor, (135, 100, 70))
        put((yy >= floor) & (np.mod(xx + rng.uniform(0, 1), 0.17) < 0.02), (112, 82, 58))
        img += _noise(rng, s, 4)
    else:
        raise ValueError(f"unknown scene {scene!r}; expected one of {SCENES}")
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ rendering


def _draw(canvas: np.ndarray, state: ObjectState) -> None:
    if not state.visible:
        return
    r = state.radius
    mask = shape_mask(state.shape, r)
    s_h, s_w = canvas.shape[:2]
    y0, x0 = state.cy - r, state.cx - r
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + 2 * r + 1, s_h), min(x0 + 2 * r + 1, s_w)
    if ys >= ye or xs >= xe:
        return
    m = mask[ys - y0 : ye - y0, xs - x0 : xe - x0]
    patch = canvas[ys:ye, xs:xe]
    rgb = np.asarray(state.rgb, dtype=np.float64)
    if state.alpha >= 1.0:
        patch[m] = rgb.astype(np.uint8)
    else:
        blended = patch[m].astype(np.float64) * (1.0 - state.alpha) + rgb * state.alpha
        patch[m] = np.round(blended).astype(np.uint8)


def _clip_box(box: tuple[int, int, int, int], size: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)


def render_video(
    scene: Scene,
    num_frames: int | None = None,
    fps: float | None = None,
    size: int = REFERENCE_SIZE,
    objects: list[int] | None = None,
) -> Video:
    """Render a scene as a video with per-frame boxes and visibility.

    Args:
        scene: the scene.
        num_frames: frame count (default: ``scene.num_frames``).
        fps: frame rate (default: ``scene.fps``); frame ``t`` shows time ``t / fps``.
        size: image side in pixels.
        objects: draw only these object indices (default: all); boxes and visibility still cover all objects.
            Rendering one object alone over the background yields its pixel mask.

    Returns:
        The :class:`Video`.
    """
    num_frames = scene.num_frames if num_frames is None else num_frames
    fps = scene.fps if fps is None else fps
    if num_frames < 1 or fps <= 0 or size < 1:
        raise ValueError(f"need num_frames >= 1, fps > 0, size >= 1; got {num_frames}, {fps}, {size}")
    background = render_background(scene.scene, size, scene.texture_seed)
    n = len(scene.objects)
    draw = set(range(n)) if objects is None else set(objects)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    boxes = np.zeros((num_frames, n, 4), dtype=np.int64)
    visible = np.zeros((num_frames, n), dtype=bool)
    for t in range(num_frames):
        canvas = frames[t]
        canvas[:] = background
        for i in range(n):
            state = object_state(scene, i, t, fps, size)
            if state.visible:
                visible[t, i] = True
                boxes[t, i] = _clip_box(state.box(), size)
                if i in draw:
                    _draw(canvas, state)
    times = np.arange(num_frames, dtype=np.float64) / fps
    return Video(frames=frames, boxes=boxes, visible=visible, times=times, fps=float(fps))


def render_image(scene: Scene, size: int = REFERENCE_SIZE, frame: int = 0) -> np.ndarray:
    """Render the scene's state at ``frame`` (default: time 0) as a ``(size, size, 3)`` uint8 image."""
    return render_video_frame(scene, frame, scene.fps, size)


def render_video_frame(scene: Scene, frame: int, fps: float, size: int = REFERENCE_SIZE) -> np.ndarray:
    """Render one frame (time ``frame / fps``) as a ``(size, size, 3)`` uint8 image."""
    canvas = render_background(scene.scene, size, scene.texture_seed).copy()
    for i in range(len(scene.objects)):
        _draw(canvas, object_state(scene, i, frame, fps, size))
    return canvas


def object_boxes(scene: Scene, size: int = REFERENCE_SIZE, frame: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` (``[x0, y0, x1, y1]`` pixel edges) and visibility ``(N,)`` at a frame."""
    n = len(scene.objects)
    boxes = np.zeros((n, 4), dtype=np.int64)
    visible = np.zeros(n, dtype=bool)
    for i in range(n):
        state = object_state(scene, i, frame, scene.fps, size)
        if state.visible:
            visible[i] = True
            boxes[i] = _clip_box(state.box(), size)
    return boxes, visible


# ------------------------------------------------------------------------------------------- sampling


def max_window_frames(kind: str, distance: float | None = None) -> int:
    """Longest window (frames) in which every frame of a ``kind`` event is visibly different at 64 px."""
    if kind == "move":
        return max(1, math.floor((distance or 0.0) * REFERENCE_SIZE))
    if kind in ("grow", "shrink"):
        return abs(radius_px("large", REFERENCE_SIZE) - radius_px("small", REFERENCE_SIZE))
    if kind == "recolour":
        return MAX_RECOLOUR_FRAMES
    if kind in ("appear", "disappear"):
        return MAX_FADE_FRAMES
    raise ValueError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")


def _max_radius(scene: Scene, index: int) -> float:
    event = scene.event_of(index)
    if event is not None and event.kind in ("grow", "shrink"):
        return SIZES["large"]
    return SIZES[scene.objects[index].size]


def _path(scene: Scene, index: int, points: int = 9) -> np.ndarray:
    obj = scene.objects[index]
    event = scene.event_of(index)
    start = np.array([obj.x, obj.y])
    if event is None or event.kind != "move":
        return start[None]
    step = np.asarray(DIRECTIONS[event.direction], dtype=np.float64) * event.distance
    return start[None] + np.linspace(0.0, 1.0, points)[:, None] * step[None]


def is_valid_layout(scene: Scene) -> bool:
    """Whether every object stays inside the image and no two objects' paths ever come close to touching."""
    paths = [_path(scene, i) for i in range(len(scene.objects))]
    radii = [_max_radius(scene, i) for i in range(len(scene.objects))]
    for path, r in zip(paths, radii):
        if (path < r + _MARGIN).any() or (path > 1.0 - r - _MARGIN).any():
            return False
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            gap = np.sqrt(((paths[i][:, None] - paths[j][None]) ** 2).sum(-1)).min()
            # sqrt(2) covers square corners, the rest the path sampling and a visible gap.
            if gap < (radii[i] + radii[j]) * 1.5 + _MARGIN:
                return False
    return True


def _place(scene: Scene, rng: np.random.Generator, tries: int = 200) -> bool:
    for _ in range(tries):
        for i, obj in enumerate(scene.objects):
            r = _max_radius(scene, i) + _MARGIN
            event = scene.event_of(i)
            lo = np.array([r, r])
            hi = np.array([1 - r, 1 - r])
            if event is not None and event.kind == "move":
                step = np.asarray(DIRECTIONS[event.direction], dtype=np.float64) * event.distance
                lo = lo - np.minimum(step, 0)
                hi = hi - np.maximum(step, 0)
            if (hi <= lo).any():
                return False
            obj.x, obj.y = (float(v) for v in np.round(rng.uniform(lo, hi), 4))
        if is_valid_layout(scene):
            return True
    return False


def _as_range(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    lo, hi = value
    return int(lo), int(hi)


def sample_event(
    rng: np.random.Generator,
    index: int,
    kind: str,
    num_frames: int,
    fps: float,
    colour: str,
    colours: tuple[str, ...] = tuple(COLOURS),
) -> Event:
    """Draw an event of ``kind`` for object ``index`` with a window aligned to the frame grid."""
    distance = None
    direction = None
    new_colour = None
    if kind == "move":
        direction = str(rng.choice(list(DIRECTIONS)))
        distance = float(np.round(rng.uniform(0.2, 0.4), 4))
    elif kind == "recolour":
        new_colour = str(
            rng.choice([c for c in colours if c != colour] or [c for c in COLOURS if c != colour])
        )
    longest = min(max_window_frames(kind, distance), num_frames - 1)
    k = int(rng.integers(1, longest + 1))
    t0 = int(rng.integers(1, num_frames - k + 1))
    return Event(
        object=index,
        kind=kind,
        start=t0 / fps,
        end=(t0 + k) / fps,
        direction=direction,
        distance=distance or 0.0,
        colour=new_colour,
    )


def sample_scene(
    rng: np.random.Generator,
    *,
    num_objects: int | tuple[int, int] = (1, 3),
    num_events: int | tuple[int, int] = (0, 2),
    num_frames: int = 10,
    fps: float = 5.0,
    scenes: tuple[str, ...] = SCENES,
    shapes: tuple[str, ...] = SHAPES,
    colours: tuple[str, ...] = tuple(COLOURS),
    event_kinds: tuple[str, ...] = EVENT_KINDS,
) -> Scene:
    """Draw a random scene.

    Args:
        rng: the generator; the scene is a pure function of its state.
        num_objects: object count, or an inclusive ``(low, high)`` range.
        num_events: event count (at most one per object, none for a single frame), or a range.
        num_frames: frame count the event windows are sampled for (1 for an image).
        fps: frame rate the event windows are aligned to.
        scenes, shapes, colours, event_kinds: the vocabularies to draw from.

    Returns:
        A :class:`Scene` whose objects never overlap and stay inside the image at all times.
    """
    if num_frames < 1 or fps <= 0:
        raise ValueError(f"need num_frames >= 1 and fps > 0; got {num_frames}, {fps}")
    lo, hi = _as_range(num_objects)
    n_obj = int(rng.integers(lo, hi + 1))
    e_lo, e_hi = _as_range(num_events)
    n_events = min(int(rng.integers(e_lo, e_hi + 1)), n_obj) if num_frames >= 2 else 0
    scene = Scene(
        scene=str(rng.choice(scenes)),
        objects=[],
        texture_seed=int(rng.integers(0, 2**31 - 1)),
        num_frames=num_frames,
        fps=float(fps),
    )
    for i in range(n_obj):
        kind = str(rng.choice(event_kinds)) if i < n_events else None
        colour = str(rng.choice(colours))
        size = str(rng.choice(list(SIZES)))
        if kind == "grow":
            size = "small"
        elif kind == "shrink":
            size = "large"
        scene.objects.append(ToyObject(str(rng.choice(shapes)), colour, size, 0.5, 0.5))
        if kind is not None:
            scene.events.append(sample_event(rng, i, kind, num_frames, fps, colour, colours))
    while not _place(scene, rng):
        # Too crowded: drop the last object (and its event) and try again.
        last = len(scene.objects) - 1
        scene.objects.pop()
        scene.events = [e for e in scene.events if e.object != last]
    return scene


# ------------------------------------------------------------------------------------- hard negatives


@dataclass(frozen=True)
class Change:
    """The one difference of a hard negative from its anchor: a field path, its old and its new value."""

    field: str
    before: Any
    after: Any


def _variant(
    anchor: Scene, rng: np.random.Generator, kind: str, colours: tuple[str, ...], shapes: tuple[str, ...]
) -> tuple[Scene, Change] | None:
    scene = Scene.from_dict(anchor.to_dict())
    n = len(scene.objects)
    order = [int(i) for i in rng.permutation(n)]
    if kind == "scene":
        new = str(rng.choice([s for s in SCENES if s != scene.scene]))
        change = Change("scene", scene.scene, new)
        scene.scene = new
        return scene, change
    if kind in ("colour", "shape", "size"):
        for i in order:
            obj = scene.objects[i]
            event = scene.event_of(i)
            if kind == "colour":
                taken = {obj.colour, event.colour if event is not None else None}
                options = [c for c in colours if c not in taken]
            elif kind == "shape":
                options = [s for s in shapes if s != obj.shape]
            else:
                if event is not None and event.kind in ("grow", "shrink"):
                    continue
                options = [s for s in SIZES if s != obj.size]
            if not options:
                continue
            new = str(rng.choice(options))
            before = getattr(obj, kind)
            setattr(obj, kind, new)
            if is_valid_layout(scene):
                return scene, Change(f"objects[{i}].{kind}", before, new)
            setattr(obj, kind, before)
        return None
    if kind == "event":
        for j in [int(j) for j in rng.permutation(len(scene.events))]:
            event = scene.events[j]
            if event.kind == "move":
                for direction in [str(d) for d in rng.permutation(list(DIRECTIONS))]:
                    if direction == event.direction:
                        continue
                    before = event.direction
                    event.direction = direction
                    if is_valid_layout(scene):
                        return scene, Change(f"events[{j}].direction", before, direction)
                    event.direction = before
            elif event.kind == "recolour":
                taken = {event.colour, scene.objects[event.object].colour}
                options = [c for c in colours if c not in taken]
                if options:
                    new = str(rng.choice(options))
                    change = Change(f"events[{j}].colour", event.colour, new)
                    event.colour = new
                    return scene, change
            elif event.kind in ("appear", "disappear"):
                new = "disappear" if event.kind == "appear" else "appear"
                change = Change(f"events[{j}].kind", event.kind, new)
                event.kind = new
                return scene, change
        return None
    raise ValueError(f"unknown hard-negative kind {kind!r}; expected one of {NEGATIVE_KINDS}")


NEGATIVE_KINDS: tuple[str, ...] = ("colour", "shape", "size", "scene", "event")


def sample_family(
    rng: np.random.Generator,
    size: int,
    kinds: tuple[str, ...] = NEGATIVE_KINDS,
    colours: tuple[str, ...] = tuple(COLOURS),
    shapes: tuple[str, ...] = SHAPES,
    **scene_kwargs: Any,
) -> list[tuple[Scene, Change | None]]:
    """A family of hard negatives: an anchor and ``size - 1`` scenes that each differ from it in one field.

    The kinds of change cycle through ``kinds`` (in a random order); a kind that does not apply to the anchor
    (an ``event`` change when it has no move, recolour or fade event; a size change that would make objects
    touch) is skipped. If no kind applies, a new anchor is drawn. Variants keep the anchor's texture seed.

    Returns:
        ``[(anchor, None), (variant, Change), ...]`` of length ``size``.
    """
    for kind in kinds:
        if kind not in NEGATIVE_KINDS:
            raise ValueError(f"unknown hard-negative kind {kind!r}; expected one of {NEGATIVE_KINDS}")
    for _ in range(100):
        anchor = sample_scene(rng, colours=colours, shapes=shapes, **scene_kwargs)
        family: list[tuple[Scene, Change | None]] = [(anchor, None)]
        seen: set[tuple[str, str]] = set()
        order = [str(k) for k in rng.permutation(list(kinds))]
        misses = 0
        while len(family) < size and misses < 4 * len(order):
            kind = order[(len(family) - 1 + misses) % len(order)]
            result = _variant(anchor, rng, kind, colours, shapes)
            if result is None or (result[1].field, str(result[1].after)) in seen:
                misses += 1
                continue
            seen.add((result[1].field, str(result[1].after)))
            family.append(result)
        if len(family) == size:
            return family
    raise ValueError(
        f"could not build a family of {size} scenes differing in one of {kinds} from an anchor; "
        "use a smaller family or more kinds of change"
    )
