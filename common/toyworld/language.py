"""The toy world's language: captions, referring expressions, QA pairs and labels, in English and Chinese.

Every text is built from tokens of a closed part-of-speech lexicon (:func:`lexicon`). A token either carries
content, written as a tag ``"<kind>:<value>"`` (``colour:red``, ``shape:circle``, ``size:large``,
``scene:beach``, ``action:move``, ``side:left``, ``count:2``, ``answer:yes``), or is a filler (``None``):
articles, prepositions, "in this video", punctuation. Captions are drawn in two steps, so that one content can
be said in both languages: :func:`choose_content` picks the facts to mention (a :class:`CaptionContent`), and
:func:`realize` says them with a random template in one language. The tags of a caption's content tokens are,
as a multiset, exactly :func:`content_tags` of its content, in either language.

English captions are lower case with words separated by spaces; Chinese captions join their tokens without
spaces and :func:`tokenize` recovers the generator's tokens by longest match against the lexicon.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from common.toyworld.scene import COLOURS, EVENT_KINDS, SCENES, SHAPES, SIZES, Scene

LANGS: tuple[str, ...] = ("en", "zh")


@dataclass(frozen=True)
class LexEntry:
    """A lexicon entry: universal part-of-speech tag and content tag (None for a filler word)."""

    pos: str
    meaning: str | None


# Content words: one meaning each; English has a few synonyms so that words and meanings are not 1:1.
_CONTENT: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        **{c: ("ADJ", f"colour:{c}") for c in COLOURS},
        **{s: ("NOUN", f"shape:{s}") for s in SHAPES},
        "small": ("ADJ", "size:small"),
        "little": ("ADJ", "size:small"),
        "large": ("ADJ", "size:large"),
        "big": ("ADJ", "size:large"),
        "beach": ("NOUN", "scene:beach"),
        "forest": ("NOUN", "scene:forest"),
        "city": ("NOUN", "scene:city"),
        "snow": ("NOUN", "scene:snow"),
        "night": ("NOUN", "scene:night"),
        "desert": ("NOUN", "scene:desert"),
        "sea": ("NOUN", "scene:underwater"),
        "room": ("NOUN", "scene:room"),
        "moves": ("VERB", "action:move"),
        "slides": ("VERB", "action:move"),
        "grows": ("VERB", "action:grow"),
        "expands": ("VERB", "action:grow"),
        "shrinks": ("VERB", "action:shrink"),
        "turns": ("VERB", "action:recolour"),
        "becomes": ("VERB", "action:recolour"),
        "changes": ("VERB", "action:recolour"),
        "appears": ("VERB", "action:appear"),
        "disappears": ("VERB", "action:disappear"),
        "vanishes": ("VERB", "action:disappear"),
        "left": ("NOUN", "side:left"),
        "right": ("NOUN", "side:right"),
        "up": ("ADV", "side:top"),
        "down": ("ADV", "side:bottom"),
        "top": ("NOUN", "side:top"),
        "bottom": ("NOUN", "side:bottom"),
        "yes": ("INTJ", "answer:yes"),
        "no": ("INTJ", "answer:no"),
        **{str(n): ("NUM", f"count:{n}") for n in range(10)},
    },
    "zh": {
        "红色": ("ADJ", "colour:red"),
        "绿色": ("ADJ", "colour:green"),
        "蓝色": ("ADJ", "colour:blue"),
        "黄色": ("ADJ", "colour:yellow"),
        "紫色": ("ADJ", "colour:purple"),
        "橙色": ("ADJ", "colour:orange"),
        "粉色": ("ADJ", "colour:pink"),
        "圆形": ("NOUN", "shape:circle"),
        "正方形": ("NOUN", "shape:square"),
        "三角形": ("NOUN", "shape:triangle"),
        "菱形": ("NOUN", "shape:diamond"),
        "十字": ("NOUN", "shape:cross"),
        "星形": ("NOUN", "shape:star"),
        "小": ("ADJ", "size:small"),
        "大": ("ADJ", "size:large"),
        "海滩": ("NOUN", "scene:beach"),
        "森林": ("NOUN", "scene:forest"),
        "城市": ("NOUN", "scene:city"),
        "雪地": ("NOUN", "scene:snow"),
        "夜晚": ("NOUN", "scene:night"),
        "沙漠": ("NOUN", "scene:desert"),
        "海底": ("NOUN", "scene:underwater"),
        "房间": ("NOUN", "scene:room"),
        "移动": ("VERB", "action:move"),
        "变大": ("VERB", "action:grow"),
        "变小": ("VERB", "action:shrink"),
        "变成": ("VERB", "action:recolour"),
        "变色": ("VERB", "action:recolour"),
        "出现": ("VERB", "action:appear"),
        "消失": ("VERB", "action:disappear"),
        "向左": ("ADV", "side:left"),
        "向右": ("ADV", "side:right"),
        "向上": ("ADV", "side:top"),
        "向下": ("ADV", "side:bottom"),
        "左边": ("NOUN", "side:left"),
        "右边": ("NOUN", "side:right"),
        "上面": ("NOUN", "side:top"),
        "下面": ("NOUN", "side:bottom"),
        "有的": ("INTJ", "answer:yes"),
        "没有": ("INTJ", "answer:no"),
        **{str(n): ("NUM", f"count:{n}") for n in range(10)},
    },
}

_FILLERS: dict[str, dict[str, str]] = {
    "en": {
        "a": "DET",
        "an": "DET",
        "the": "DET",
        "this": "DET",
        "there": "PRON",
        "it": "PRON",
        "we": "PRON",
        "what": "PRON",
        "is": "AUX",
        "are": "AUX",
        "can": "AUX",
        "does": "AUX",
        "see": "VERB",
        "shows": "VERB",
        "takes": "VERB",
        "do": "VERB",
        "place": "NOUN",
        "video": "NOUN",
        "clip": "NOUN",
        "photo": "NOUN",
        "picture": "NOUN",
        "image": "NOUN",
        "object": "NOUN",
        "objects": "NOUN",
        "colour": "NOUN",
        "shape": "NOUN",
        "scene": "NOUN",
        "in": "ADP",
        "on": "ADP",
        "at": "ADP",
        "under": "ADP",
        "to": "ADP",
        "of": "ADP",
        "and": "CCONJ",
        "then": "ADV",
        "here": "ADV",
        "how": "ADV",
        "where": "ADV",
        "many": "ADJ",
        "later": "ADV",
        ",": "PUNCT",
        ".": "PUNCT",
        "?": "PUNCT",
    },
    "zh": {
        "一个": "DET",
        "这个": "DET",
        "这": "PRON",
        "我们": "PRON",
        "什么": "PRON",
        "哪里": "PRON",
        "几个": "PRON",
        "的": "PART",
        "了": "PART",
        "吗": "PART",
        "在": "ADP",
        "上": "ADP",
        "里": "ADP",
        "中": "ADP",
        "有": "VERB",
        "看到": "VERB",
        "做": "VERB",
        "是": "AUX",
        "可以": "AUX",
        "视频": "NOUN",
        "画面": "NOUN",
        "图片": "NOUN",
        "场景": "NOUN",
        "物体": "NOUN",
        "颜色": "NOUN",
        "形状": "NOUN",
        "和": "CCONJ",
        "然后": "ADV",
        "接着": "ADV",
        "，": "PUNCT",
        "。": "PUNCT",
        "？": "PUNCT",
    },
}

_SCENE_PHRASE = {
    "en": {
        "beach": ["on", "the", "beach"],
        "forest": ["in", "the", "forest"],
        "city": ["in", "the", "city"],
        "snow": ["in", "the", "snow"],
        "night": ["at", "night"],
        "desert": ["in", "the", "desert"],
        "underwater": ["under", "the", "sea"],
        "room": ["in", "a", "room"],
    },
    "zh": {
        "beach": ["在", "海滩", "上"],
        "forest": ["在", "森林", "里"],
        "city": ["在", "城市", "里"],
        "snow": ["在", "雪地", "上"],
        "night": ["在", "夜晚"],
        "desert": ["在", "沙漠", "中"],
        "underwater": ["在", "海底"],
        "room": ["在", "房间", "里"],
    },
}
_SIDE_WORD = {"left": "left", "right": "right", "up": "top", "down": "bottom"}


@lru_cache(maxsize=2)
def lexicon(lang: str) -> dict[str, LexEntry]:
    """Every token the generator can emit in ``lang`` with its part of speech and content tag."""
    _check_lang(lang)
    entries = {w: LexEntry(pos, m) for w, (pos, m) in _CONTENT[lang].items()}
    entries.update({w: LexEntry(pos, None) for w, pos in _FILLERS[lang].items()})
    return entries


def word_for(tag: str, lang: str) -> list[str]:
    """All words of ``lang`` whose content tag is ``tag`` (synonyms first-to-last in lexicon order)."""
    return [w for w, e in lexicon(lang).items() if e.meaning == tag]


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; expected one of {LANGS}")


def detokenize(tokens: list[str], lang: str) -> str:
    """Join tokens: spaces in English (none before punctuation), nothing in Chinese."""
    _check_lang(lang)
    if lang == "zh":
        return "".join(tokens)
    text = ""
    for tok in tokens:
        text += tok if (not text or tok in {",", ".", "?"}) else " " + tok
    return text


def tokenize(text: str, lang: str) -> list[str]:
    """Split a generated text back into its tokens (English: spaces and punctuation; Chinese: longest match).

    Raises:
        ValueError: on a word that is not in the lexicon.
    """
    lex = lexicon(lang)
    if lang == "en":
        tokens = text.replace(",", " , ").replace(".", " . ").replace("?", " ? ").split()
        for tok in tokens:
            if tok not in lex:
                raise ValueError(f"word {tok!r} of {text!r} is not in the English lexicon")
        return tokens
    longest = max(len(w) for w in lex)
    tokens, i = [], 0
    while i < len(text):
        for n in range(min(longest, len(text) - i), 0, -1):
            if text[i : i + n] in lex:
                tokens.append(text[i : i + n])
                i += n
                break
        else:
            raise ValueError(f"no lexicon word starts at {text[i:]!r} of {text!r}")
    return tokens


def tags(tokens: list[str], lang: str) -> list[str]:
    """Content tags of the tokens, in order (fillers dropped)."""
    lex = lexicon(lang)
    return [lex[t].meaning for t in tokens if lex[t].meaning is not None]


# ------------------------------------------------------------------------------------------- captions


@dataclass(frozen=True)
class ObjectMention:
    """An object named in a caption, with the attributes the caption states (None: not stated)."""

    index: int
    shape: str
    colour: str | None = None
    size: str | None = None


@dataclass(frozen=True)
class EventMention:
    """An event stated in a caption: the object (an index into the mentions) and what happens."""

    mention: int
    kind: str
    direction: str | None = None
    colour: str | None = None


@dataclass(frozen=True)
class CaptionContent:
    """The facts a caption states: the scene class (or None), object mentions and event mentions."""

    scene: str | None
    objects: tuple[ObjectMention, ...]
    events: tuple[EventMention, ...] = ()


@dataclass(frozen=True)
class Caption:
    """A caption: its text, its tokens, its language and the content it states."""

    text: str
    tokens: tuple[str, ...]
    lang: str
    content: CaptionContent


def content_tags(content: CaptionContent) -> Counter:
    """The multiset of content tags a caption of ``content`` contains, in any language."""
    out: Counter = Counter()
    if content.scene is not None:
        out[f"scene:{content.scene}"] += 1
    for m in content.objects:
        out[f"shape:{m.shape}"] += 1
        if m.colour is not None:
            out[f"colour:{m.colour}"] += 1
        if m.size is not None:
            out[f"size:{m.size}"] += 1
    for e in content.events:
        out[f"action:{e.kind}"] += 1
        if e.direction is not None:
            out[f"side:{_SIDE_WORD[e.direction]}"] += 1
        if e.colour is not None:
            out[f"colour:{e.colour}"] += 1
    return out


def choose_content(scene: Scene, rng: np.random.Generator, full: bool = False) -> CaptionContent:
    """Pick the facts a caption states.

    Args:
        scene: the scene.
        rng: the generator.
        full: state everything: the scene, every object with colour and size, every event. Hard-negative
            families use it so that the caption names the one changed attribute.
    """
    events = {e.object: e for e in scene.events}
    said_events = [i for i in events if full or rng.random() < 0.85]
    others = [i for i in range(len(scene.objects)) if i not in said_events and (full or rng.random() < 0.6)]
    if not said_events and not others:
        others = [int(rng.integers(len(scene.objects)))]
    mentions, event_mentions = [], []
    for i in sorted(said_events, key=lambda i: (events[i].start, i)) + others:
        obj = scene.objects[i]
        colour = obj.colour if full or rng.random() < 0.85 else None
        size = obj.size if full or rng.random() < 0.45 else None
        mentions.append(ObjectMention(i, obj.shape, colour, size))
        if i in said_events:
            e = events[i]
            event_mentions.append(EventMention(len(mentions) - 1, e.kind, e.direction, e.colour))
    scene_name = scene.scene if full or rng.random() < 0.75 else None
    return CaptionContent(scene_name, tuple(mentions), tuple(event_mentions))


def _pick(rng: np.random.Generator, options: list) -> object:
    return options[int(rng.integers(len(options)))]


def _np_en(m: ObjectMention, rng: np.random.Generator, definite: bool) -> list[str]:
    words = []
    if m.size is not None:
        words.append(str(_pick(rng, word_for(f"size:{m.size}", "en"))))
    if m.colour is not None:
        words.append(m.colour)
    words.append(m.shape)
    article = "the" if definite else ("an" if words[0][0] in "aeiou" else "a")
    return [article, *words]


def _np_zh(m: ObjectMention, rng: np.random.Generator, definite: bool) -> list[str]:
    words = [] if definite else ["一个"]
    if definite and rng.random() < 0.3:
        words = ["这个"]
    if m.colour is not None:
        words.append(word_for(f"colour:{m.colour}", "zh")[0])
        if rng.random() < 0.6:
            words.append("的")
    if m.size is not None:
        words.append(word_for(f"size:{m.size}", "zh")[0])
    words.append(word_for(f"shape:{m.shape}", "zh")[0])
    return words


def _vp_en(e: EventMention, rng: np.random.Generator) -> list[str]:
    verb = str(_pick(rng, word_for(f"action:{e.kind}", "en")))
    if e.kind == "move":
        side = _SIDE_WORD[e.direction]
        return [verb, *(["to", "the", side] if side in ("left", "right") else [side])]
    if e.kind == "recolour":
        if verb == "changes":
            return [verb, "to", e.colour]
        return [verb, e.colour]
    return [verb]


def _vp_zh(e: EventMention, rng: np.random.Generator) -> list[str]:
    if e.kind == "move":
        return [
            word_for(f"side:{_SIDE_WORD[e.direction]}", "zh")[0],
            "移动",
            *(["了"] if rng.random() < 0.5 else []),
        ]
    if e.kind == "recolour":
        return ["变成", "了", word_for(f"colour:{e.colour}", "zh")[0]]
    verb = word_for(f"action:{e.kind}", "zh")[0]
    return [verb, "了"]


def realize(content: CaptionContent, lang: str, rng: np.random.Generator, medium: str = "video") -> Caption:
    """Say ``content`` in ``lang`` with a random template.

    Args:
        content: the facts (from :func:`choose_content`).
        lang: ``"en"`` or ``"zh"``.
        rng: the generator (template and synonym choice).
        medium: ``"video"`` or ``"image"`` (only changes filler words).
    """
    _check_lang(lang)
    event_of = {e.mention: e for e in content.events}
    still = [m for k, m in enumerate(content.objects) if k not in event_of]
    scene_at_start = content.scene is not None and rng.random() < 0.4
    scene_as_clause = content.scene is not None and not scene_at_start and rng.random() < 0.3
    tokens: list[str] = []
    if lang == "en":
        media = ["video", "clip"] if medium == "video" else ["photo", "picture", "image"]
        if scene_at_start:
            tokens += [*_SCENE_PHRASE["en"][content.scene], ","]
        elif rng.random() < 0.4:
            tokens += [*_pick(rng, [["in", "this", str(_pick(rng, media))], ["here"]]), ","]
        clauses: list[list[str]] = []
        for k, m in enumerate(content.objects):
            if k in event_of:
                clauses.append(_np_en(m, rng, definite=rng.random() < 0.4) + _vp_en(event_of[k], rng))
        if still:
            nps: list[str] = []
            for j, m in enumerate(still):
                nps += (["and"] if j else []) + _np_en(m, rng, definite=False)
            if rng.random() < 0.5:
                clauses.append(["there", "is" if len(still) == 1 else "are", *nps])
            else:
                clauses.append(["we", "can", "see", *nps])
        for j, clause in enumerate(clauses):
            if j:
                tokens += list(_pick(rng, [[",", "then"], ["and"], [",", "and"]]))
            tokens += clause
        if content.scene is not None and not scene_at_start:
            if scene_as_clause:
                tokens += [",", "it", "takes", "place", *_SCENE_PHRASE["en"][content.scene]]
            else:
                tokens += _SCENE_PHRASE["en"][content.scene]
        tokens.append(".")
    else:
        media = ["视频", "画面"] if medium == "video" else ["图片", "画面"]
        if rng.random() < 0.4:
            tokens += [
                *_pick(rng, [["在", "这个", str(_pick(rng, media)), "里"], [str(_pick(rng, media)), "中"]]),
                "，",
            ]
        if content.scene is not None and not scene_as_clause:
            # Chinese puts the place before the clause; the intro, when there is one, comes first.
            tokens += [*_SCENE_PHRASE["zh"][content.scene], "，"]
        clauses = []
        for k, m in enumerate(content.objects):
            if k in event_of:
                clauses.append(_np_zh(m, rng, definite=rng.random() < 0.4) + _vp_zh(event_of[k], rng))
        if still:
            nps = []
            for j, m in enumerate(still):
                nps += (["和"] if j else []) + _np_zh(m, rng, definite=False)
            clauses.append(["有", *nps] if rng.random() < 0.5 else ["我们", "可以", "看到", *nps])
        for j, clause in enumerate(clauses):
            if j:
                tokens += list(_pick(rng, [["，", "然后"], ["，"], ["，", "接着"]]))
            tokens += clause
        if scene_as_clause:
            tokens += ["，", "场景", "是", word_for(f"scene:{content.scene}", "zh")[0]]
        tokens.append("。")
    return Caption(detokenize(tokens, lang), tuple(tokens), lang, content)


def caption(
    scene: Scene, rng: np.random.Generator, lang: str = "en", medium: str = "video", full: bool = False
) -> Caption:
    """A random caption of the scene in one language (see :func:`caption_pair` for both)."""
    return realize(choose_content(scene, rng, full), lang, rng, medium)


def caption_pair(
    scene: Scene, rng: np.random.Generator, medium: str = "video", full: bool = False
) -> tuple[Caption, Caption]:
    """An English and a Chinese caption stating the same content (templates drawn independently)."""
    content = choose_content(scene, rng, full)
    return realize(content, "en", rng, medium), realize(content, "zh", rng, medium)


# ------------------------------------------------------------------------------- referring expressions

SIDES: tuple[str, ...] = ("left", "right", "top", "bottom")
_MIN_SIDE_GAP = 0.08


@dataclass(frozen=True)
class Referring:
    """A referring expression: text, tokens, language, the object it singles out and the attributes used.

    ``side`` selects, among the objects that have the stated attributes, the one furthest to that side.
    """

    text: str
    tokens: tuple[str, ...]
    lang: str
    target: int
    colour: str | None = None
    shape: str | None = None
    size: str | None = None
    side: str | None = None


def visible_at_start(scene: Scene) -> list[int]:
    """Indices of the objects visible at time 0 (objects that appear later are not)."""
    return [i for i in range(len(scene.objects)) if (e := scene.event_of(i)) is None or e.kind != "appear"]


def resolve(
    scene: Scene,
    colour: str | None = None,
    shape: str | None = None,
    size: str | None = None,
    side: str | None = None,
) -> list[int]:
    """The objects visible at time 0 that a description matches (the reference semantics of referring).

    With ``side``, the one object furthest to that side among the attribute matches, if it leads the next one
    by a clear gap; otherwise none.
    """
    cands = [
        i
        for i in visible_at_start(scene)
        if (colour is None or scene.objects[i].colour == colour)
        and (shape is None or scene.objects[i].shape == shape)
        and (size is None or scene.objects[i].size == size)
    ]
    if side is None or not cands:
        return cands

    def key(i: int) -> float:
        o = scene.objects[i]
        return {"left": o.x, "right": -o.x, "top": o.y, "bottom": -o.y}[side]

    ranked = sorted(cands, key=key)
    if len(ranked) > 1 and key(ranked[1]) - key(ranked[0]) < _MIN_SIDE_GAP:
        return []
    return ranked[:1]


def _say_ref(attrs: dict[str, str | None], lang: str, rng: np.random.Generator) -> list[str]:
    if lang == "en":
        words = ["the"]
        if attrs["size"]:
            words.append(str(_pick(rng, word_for(f"size:{attrs['size']}", "en"))))
        if attrs["colour"]:
            words.append(attrs["colour"])
        words.append(attrs["shape"] or "object")
        if attrs["side"]:
            words += (
                ["on", "the", attrs["side"]]
                if attrs["side"] in ("left", "right")
                else ["at", "the", attrs["side"]]
            )
        return words
    words = [word_for(f"side:{attrs['side']}", "zh")[-1], "的"] if attrs["side"] else []
    if attrs["colour"]:
        words.append(word_for(f"colour:{attrs['colour']}", "zh")[0])
        if rng.random() < 0.5 or not attrs["shape"]:
            words.append("的")
    if attrs["size"]:
        words.append(word_for(f"size:{attrs['size']}", "zh")[0])
    words.append(word_for(f"shape:{attrs['shape']}", "zh")[0] if attrs["shape"] else "物体")
    return words


def refer(scene: Scene, target: int, rng: np.random.Generator, lang: str = "en") -> Referring | None:
    """A referring expression that singles out object ``target`` among the objects visible at time 0.

    Tries attribute sets from the smallest up (random order among equals), then adds a side ("on the left");
    sometimes states one attribute more than needed, as people do. Returns None if the target is not visible
    at time 0 or no description singles it out.
    """
    _check_lang(lang)
    if target not in visible_at_start(scene):
        return None
    obj = scene.objects[target]
    names = ["colour", "shape", "size"]
    subsets = [(a,) for a in names] + [(a, b) for a in names for b in names if a < b] + [tuple(names)]
    order = sorted(range(len(subsets)), key=lambda k: (len(subsets[k]), rng.random()))
    chosen: dict[str, str | None] | None = None
    for with_side in (False, True):
        for k in order:
            for side in [str(s) for s in rng.permutation(list(SIDES))] if with_side else [None]:
                attrs = {a: (getattr(obj, a) if a in subsets[k] else None) for a in names}
                if resolve(scene, side=side, **attrs) == [target]:
                    chosen = {**attrs, "side": side}
                    break
            if chosen:
                break
        if chosen:
            break
    if chosen is None:
        return None
    missing = [a for a in names if chosen[a] is None]
    if missing and rng.random() < 0.3:
        extra = str(_pick(rng, missing))
        trial = {**chosen, extra: getattr(obj, extra)}
        if resolve(scene, **trial) == [target]:
            chosen = trial
    tokens = _say_ref(chosen, lang, rng)
    return Referring(detokenize(tokens, lang), tuple(tokens), lang, target, **chosen)


# ------------------------------------------------------------------------------------------------ QA


@dataclass(frozen=True)
class QA:
    """A question with its answer, tokens of both, the question kind and the language."""

    question: str
    answer: str
    question_tokens: tuple[str, ...]
    answer_tokens: tuple[str, ...]
    kind: str
    lang: str


QA_KINDS: tuple[str, ...] = ("count", "colour", "shape", "exists", "scene", "action")


def _qa(q: list[str], a: list[str], kind: str, lang: str) -> QA:
    return QA(detokenize(q, lang), detokenize(a, lang), tuple(q), tuple(a), kind, lang)


def qa_pairs(scene: Scene, rng: np.random.Generator, lang: str = "en") -> list[QA]:
    """Simple questions about the scene with their answers, one per applicable kind of :data:`QA_KINDS`.

    Questions are about the objects visible at time 0 and their attributes at time 0; ``action`` asks what an
    object does in the video. ``count`` answers are single digits (scenes of up to 9 objects).
    """
    _check_lang(lang)
    en = lang == "en"
    vis = visible_at_start(scene)
    out: list[QA] = []

    def w(tag: str) -> str:
        return word_for(tag, lang)[0]

    n = len(vis)
    out.append(
        _qa(
            ["how", "many", "objects", "are", "there", "?"]
            if en
            else ["画面", "中", "有", "几个", "物体", "？"],
            [str(n)],
            "count",
            lang,
        )
    )
    unique_shape = [i for i in vis if resolve(scene, shape=scene.objects[i].shape) == [i]]
    if unique_shape:
        o = scene.objects[int(_pick(rng, unique_shape))]
        q = (
            ["what", "colour", "is", "the", o.shape, "?"]
            if en
            else [w(f"shape:{o.shape}"), "是", "什么", "颜色", "？"]
        )
        out.append(_qa(q, [w(f"colour:{o.colour}")], "colour", lang))
    unique_colour = [i for i in vis if resolve(scene, colour=scene.objects[i].colour) == [i]]
    if unique_colour:
        o = scene.objects[int(_pick(rng, unique_colour))]
        q = (
            ["what", "shape", "is", "the", o.colour, "object", "?"]
            if en
            else [w(f"colour:{o.colour}"), "的", "物体", "是", "什么", "形状", "？"]
        )
        out.append(_qa(q, [w(f"shape:{o.shape}")], "shape", lang))
    if rng.random() < 0.5 and vis:
        o = scene.objects[int(_pick(rng, vis))]
        colour, shape = o.colour, o.shape
    else:
        colour, shape = str(_pick(rng, list(COLOURS))), str(_pick(rng, list(SHAPES)))
    present = bool(resolve(scene, colour=colour, shape=shape))
    q = (
        ["is", "there", "an" if colour[0] in "aeiou" else "a", colour, shape, "?"]
        if en
        else ["画面", "中", "有", w(f"colour:{colour}"), "的", w(f"shape:{shape}"), "吗", "？"]
    )
    out.append(_qa(q, [w(f"answer:{'yes' if present else 'no'}")], "exists", lang))
    out.append(
        _qa(
            ["where", "is", "this", "?"] if en else ["这", "是", "在", "哪里", "？"],
            [w(f"scene:{scene.scene}")],
            "scene",
            lang,
        )
    )
    actors = [e for e in scene.events if resolve(scene, shape=scene.objects[e.object].shape) == [e.object]]
    if actors:
        e = actors[int(rng.integers(len(actors)))]
        shape = scene.objects[e.object].shape
        q = (
            ["what", "does", "the", shape, "do", "?"]
            if en
            else [w(f"shape:{shape}"), "做", "了", "什么", "？"]
        )
        answer = w(f"action:{e.kind}") if e.kind != "recolour" else ("changes" if en else "变色")
        out.append(_qa(q, [answer] + (["colour"] if en and e.kind == "recolour" else []), "action", lang))
    return out


# --------------------------------------------------------------------------------------------- labels

LABELS: tuple[str, ...] = (
    *(f"scene:{s}" for s in SCENES),
    *(f"shape:{s}" for s in SHAPES),
    *(f"colour:{c}" for c in COLOURS),
    *(f"size:{s}" for s in SIZES),
    *(f"action:{k}" for k in EVENT_KINDS),
)


def labels(scene: Scene) -> list[str]:
    """The multi-label set of a scene, in :data:`LABELS` order: its scene class and every object's shape,
    colours (start and, for a recolour, end), sizes (including the ends of grow and shrink) and actions."""
    found = {f"scene:{scene.scene}"}
    for o in scene.objects:
        found |= {f"shape:{o.shape}", f"colour:{o.colour}", f"size:{o.size}"}
    for e in scene.events:
        found.add(f"action:{e.kind}")
        if e.kind == "recolour":
            found.add(f"colour:{e.colour}")
        if e.kind in ("grow", "shrink"):
            found.add("size:large" if e.kind == "grow" else "size:small")
    return [label for label in LABELS if label in found]


__all__ = [
    "LABELS",
    "LANGS",
    "QA",
    "QA_KINDS",
    "SIDES",
    "Caption",
    "CaptionContent",
    "EventMention",
    "LexEntry",
    "ObjectMention",
    "Referring",
    "caption",
    "caption_pair",
    "choose_content",
    "content_tags",
    "detokenize",
    "labels",
    "lexicon",
    "qa_pairs",
    "realize",
    "refer",
    "resolve",
    "tags",
    "tokenize",
    "visible_at_start",
    "word_for",
]
