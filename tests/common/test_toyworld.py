"""Tests of ``common.toyworld``: determinism, boxes, event windows, bilingual captions, referring expressions,
QA, hard negatives, and the MSR-VTT and image-text writers with their CLI."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from common.toyworld import (
    COLOURS,
    SCENES,
    SHAPES,
    Event,
    Scene,
    ToyObject,
    caption_pair,
    content_tags,
    generate,
    labels,
    lexicon,
    qa_pairs,
    refer,
    render_background,
    render_image,
    render_video,
    sample_family,
    sample_scene,
    tags,
    tokenize,
    window_frames,
)
from common.toyworld.__main__ import main
from common.toyworld.scene import DIRECTIONS, SIZES
from common.toyworld.writers import (
    META_FILE,
    SPEC_FILE,
    WRITERS,
    WriteContext,
    make_options,
    register_writer,
)

UPOS = {
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PUNCT",
    "SCONJ",
    "VERB",
}


def scenes(n: int, seed: int = 0, **kwargs) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, **kwargs) for _ in range(n)]


# ------------------------------------------------------------------------------------------ world model


def test_same_seed_gives_same_scenes_pixels_and_text():
    def draw(seed: int):
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng)
        en, zh = caption_pair(scene, rng)
        return scene.to_dict(), render_video(scene).frames, en.text, zh.text

    a, b, c = draw(7), draw(7), draw(8)
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]
    assert a[0] != c[0]


def test_scene_round_trips_through_dict():
    for scene in scenes(20):
        assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_object_colours_stay_distinguishable_from_every_background():
    for name in SCENES:
        pixels = np.concatenate([render_background(name, 64, s).reshape(-1, 3) for s in range(8)]).astype(int)
        for colour, rgb in COLOURS.items():
            diff = np.abs(pixels - np.asarray(rgb))
            assert diff.max(1).min() >= 60, (name, colour)
            assert np.sqrt((diff**2).sum(1)).min() >= 90, (name, colour)


def test_background_classes_are_separable_by_mean_colour():
    means = {n: [render_background(n, 32, s).reshape(-1, 3).mean(0) for s in range(10)] for n in SCENES}
    centroids = {n: np.mean(v[:5], axis=0) for n, v in means.items()}
    for name, values in means.items():
        for m in values[5:]:
            assert min(centroids, key=lambda c: np.linalg.norm(centroids[c] - m)) == name


def test_vocabulary_sizes_meet_the_brief():
    assert len(SCENES) >= 6 and len(SHAPES) >= 6 and len(COLOURS) >= 6 and len(SIZES) == 2


def _pixels_of(scene: Scene, index: int, size: int) -> np.ndarray:
    """(T, S, S) mask of the pixels that object ``index`` changes when drawn alone over the background."""
    alone = render_video(scene, size=size, objects=[index]).frames.astype(int)
    empty = render_video(scene, size=size, objects=[]).frames.astype(int)
    return np.abs(alone - empty).sum(-1) > 0


@pytest.mark.parametrize("size", [64, 96])
def test_every_box_is_the_tight_box_of_the_object_rendered_pixels(size):
    checked = 0
    for scene in scenes(40, seed=size, num_objects=(1, 3), num_events=(0, 3)):
        video = render_video(scene, size=size)
        background = render_video(scene, size=size, objects=[]).frames.astype(int)
        union = np.zeros(video.frames.shape[:3], dtype=bool)
        for i in range(len(scene.objects)):
            pixels = _pixels_of(scene, i, size)
            for t in range(video.frames.shape[0]):
                if not video.visible[t, i]:
                    assert not pixels[t].any()
                    continue
                rows, cols = np.nonzero(pixels[t])
                tight = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
                assert video.boxes[t, i].tolist() == tight, (scene, i, t)
                x0, y0, x1, y1 = video.boxes[t, i]
                union[t, y0:y1, x0:x1] = True
                checked += 1
        # In the full frame, nothing outside the boxes differs from the background (objects never overlap).
        changed = np.abs(video.frames.astype(int) - background).sum(-1) > 0
        assert not (changed & ~union).any()
    assert checked > 200


def test_event_window_is_exactly_the_frames_where_the_object_changes():
    seen = Counter()
    for scene in scenes(120, seed=3, num_objects=(1, 3), num_events=(1, 3), num_frames=12, fps=4.0):
        for i in range(len(scene.objects)):
            alone = render_video(scene, objects=[i])
            frames = alone.frames.astype(int)
            changed = {t for t in range(1, len(frames)) if np.abs(frames[t] - frames[t - 1]).any()}
            event = scene.event_of(i)
            if event is None:
                assert changed == set()
                continue
            seen[event.kind] += 1
            expected = {t for t in range(scene.num_frames) if event.start <= t / scene.fps < event.end}
            assert set(window_frames(event, scene.fps, scene.num_frames)) == expected
            assert changed == expected, (event, sorted(changed))
            _check_effect(scene, event, alone)
    assert set(seen) == {"move", "grow", "shrink", "recolour", "appear", "disappear"}


def _check_effect(scene: Scene, event: Event, video) -> None:
    """The change between the first and the last frame is the one the event names."""
    i, first, last = event.object, 0, len(video.frames) - 1
    b0, b1 = video.boxes[first, i], video.boxes[last, i]
    if event.kind == "move":
        dx, dy = DIRECTIONS[event.direction]
        centre = lambda b: np.array([b[0] + b[2], b[1] + b[3]]) / 2  # noqa: E731
        shift = centre(b1) - centre(b0)
        assert np.sign(shift).tolist() == [dx, dy]
    elif event.kind in ("grow", "shrink"):
        area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
        assert (area(b1) > area(b0)) == (event.kind == "grow")
    elif event.kind == "recolour":
        mask = _pixels_of(scene, i, 64)[last]
        colours = video.frames[last][mask]
        assert (colours == np.asarray(COLOURS[event.colour])).all()
    elif event.kind == "appear":
        assert not video.visible[first, i] and video.visible[last, i]
    elif event.kind == "disappear":
        assert video.visible[first, i] and not video.visible[last, i]


def test_window_frames_follow_the_stated_rule_at_other_frame_rates():
    event = Event(object=0, kind="appear", start=0.4, end=1.0)
    assert list(window_frames(event, fps=5.0)) == [2, 3, 4]
    assert list(window_frames(event, fps=2.5)) == [1, 2]
    assert list(window_frames(event, fps=10.0, num_frames=8)) == [4, 5, 6, 7]


def test_render_image_shows_the_state_at_time_zero():
    scene = Scene(
        "city", [ToyObject("circle", "red", "large", 0.5, 0.5)], [Event(0, "appear", 0.2, 0.6)], 1, 5, 5.0
    )
    assert np.array_equal(render_image(scene), render_background("city", 64, 1))
    assert not np.array_equal(render_video(scene).frames[-1], render_image(scene))


# --------------------------------------------------------------------------------------------- language


def _true_of_scene(scene: Scene, content) -> None:
    for m in content.objects:
        obj = scene.objects[m.index]
        assert m.shape == obj.shape and m.colour in (None, obj.colour) and m.size in (None, obj.size)
    for e in content.events:
        event = scene.event_of(content.objects[e.mention].index)
        assert event is not None and e.kind == event.kind
        assert e.direction == event.direction and e.colour == event.colour


def test_english_and_chinese_captions_state_the_same_content():
    lex = {lang: lexicon(lang) for lang in ("en", "zh")}
    rng = np.random.default_rng(0)
    for k, scene in enumerate(scenes(300, seed=5)):
        en, zh = caption_pair(scene, rng, medium="video" if k % 2 else "image", full=k % 5 == 0)
        assert en.content == zh.content
        _true_of_scene(scene, en.content)
        expected = content_tags(en.content)
        assert Counter(tags(list(en.tokens), "en")) == expected
        assert Counter(tags(list(zh.tokens), "zh")) == expected
        for cap in (en, zh):
            assert all(t in lex[cap.lang] for t in cap.tokens)
            assert tokenize(cap.text, cap.lang) == list(cap.tokens)
        assert " " not in zh.text and any("\u4e00" <= ch <= "\u9fff" for ch in zh.text)


def test_captions_mix_content_and_filler_words_and_vary():
    rng = np.random.default_rng(1)
    texts = set()
    for scene in scenes(100, seed=6):
        en, _ = caption_pair(scene, rng)
        meanings = [lexicon("en")[t].meaning for t in en.tokens]
        assert any(m is None for m in meanings) and any(m is not None for m in meanings)
        texts.add(" ".join(w for w, m in zip(en.tokens, meanings) if m is None))
    assert len(texts) > 20  # many filler templates


def test_lexicon_has_pos_tags_for_every_word_in_both_languages():
    for lang in ("en", "zh"):
        lex = lexicon(lang)
        assert len(lex) > 60 and all(e.pos in UPOS for e in lex.values())
        meanings = {e.meaning for e in lex.values() if e.meaning}
        for c in COLOURS:
            assert f"colour:{c}" in meanings
        for s in (*SHAPES, *(f"scene:{n}" for n in SCENES)):
            assert (f"shape:{s}" in meanings) or (s in meanings)


def _matches(scene: Scene, attrs: dict[str, str], side: str | None) -> list[int]:
    """Independent reading of a referring expression: filter visible objects, then take the extreme one."""
    visible = [
        i
        for i in range(len(scene.objects))
        if scene.event_of(i) is None or scene.event_of(i).kind != "appear"
    ]
    hits = [i for i in visible if all(getattr(scene.objects[i], k) == v for k, v in attrs.items())]
    if side is None or len(hits) <= 1:
        return hits
    coord = {"left": lambda o: o.x, "right": lambda o: -o.x, "top": lambda o: o.y, "bottom": lambda o: -o.y}[
        side
    ]
    best = min(coord(scene.objects[i]) for i in hits)
    return [i for i in hits if coord(scene.objects[i]) == best]


def test_referring_expressions_match_exactly_their_target():
    rng = np.random.default_rng(2)
    made = total = 0
    for scene in scenes(200, seed=7, num_objects=(2, 5), num_events=0, num_frames=1):
        for target in range(len(scene.objects)):
            for lang in ("en", "zh"):
                total += 1
                ref = refer(scene, target, rng, lang)
                if ref is None:
                    continue
                made += 1
                attrs, side = {}, None
                for tag in tags(list(ref.tokens), lang):
                    kind, value = tag.split(":")
                    if kind == "side":
                        side = value
                    else:
                        attrs[kind] = value
                assert _matches(scene, attrs, side) == [target], (ref.text, scene)
                assert tokenize(ref.text, lang) == list(ref.tokens)
    assert made / total > 0.9


def has(obj: ToyObject, attrs: dict[str, str]) -> bool:
    return all(getattr(obj, k) == v for k, v in attrs.items())


def test_qa_answers_are_correct():
    rng = np.random.default_rng(3)
    kinds = Counter()
    for scene in scenes(150, seed=8):
        visible = [
            i for i in range(len(scene.objects)) if (e := scene.event_of(i)) is None or e.kind != "appear"
        ]
        for lang in ("en", "zh"):
            for qa in qa_pairs(scene, rng, lang):
                kinds[qa.kind] += 1
                q = Counter(tags(list(qa.question_tokens), lang))
                a = tags(list(qa.answer_tokens), lang)
                assert len(a) == 1
                kind, value = a[0].split(":")
                asked = {t.split(":")[0]: t.split(":")[1] for t in q}
                if qa.kind == "count":
                    assert int(value) == len(visible)
                elif qa.kind in ("colour", "shape"):
                    [obj] = [scene.objects[i] for i in visible if has(scene.objects[i], asked)]
                    assert getattr(obj, qa.kind) == value
                elif qa.kind == "exists":
                    present = any(
                        all(getattr(scene.objects[i], k) == v for k, v in asked.items()) for i in visible
                    )
                    assert value == ("yes" if present else "no")
                elif qa.kind == "scene":
                    assert value == scene.scene
                elif qa.kind == "action":
                    [i] = [i for i in visible if scene.objects[i].shape == asked["shape"]]
                    assert scene.event_of(i).kind == value
    assert set(kinds) == {"count", "colour", "shape", "exists", "scene", "action"}


def test_labels_are_the_scene_shapes_colours_sizes_and_actions():
    scene = Scene(
        "snow",
        [ToyObject("star", "red", "small", 0.3, 0.3), ToyObject("cross", "blue", "large", 0.7, 0.7)],
        [Event(0, "recolour", 0.2, 0.4, colour="green")],
    )
    assert labels(scene) == [
        "scene:snow", "shape:cross", "shape:star", "colour:red", "colour:green", "colour:blue",
        "size:small", "size:large", "action:recolour",
    ]  # fmt: skip


def _leaves(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list):
        for k, v in enumerate(value):
            yield from _leaves(v, f"{prefix}[{k}]")
    else:
        yield prefix, value


def test_hard_negatives_differ_from_their_anchor_in_exactly_one_field():
    rng = np.random.default_rng(4)
    fields = Counter()
    for _ in range(40):
        family = sample_family(rng, 4, num_events=(1, 2))
        anchor = dict(_leaves(family[0][0].to_dict()))
        assert family[0][1] is None
        for scene, change in family[1:]:
            leaves = dict(_leaves(scene.to_dict()))
            diff = [k for k in anchor if anchor[k] != leaves[k]]
            assert diff == [change.field] and anchor[change.field] == change.before
            assert leaves[change.field] == change.after
            fields[change.field.split(".")[-1]] += 1
            # A full caption of the variant states something the anchor's does not.
            a = content_tags(caption_pair(family[0][0], rng, full=True)[0].content)
            b = content_tags(caption_pair(scene, rng, full=True)[0].content)
            assert a != b
    assert {"colour", "shape", "size", "scene"} <= set(fields) and fields["direction"] + fields["kind"] > 0


# ---------------------------------------------------------------------------------------------- writers


@pytest.fixture(scope="module")
def msrvtt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "msrvtt"
    main(["msrvtt", "--out", str(out), "--num", "50", "--seed", "0", "--no-progress"])
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_msrvtt_writer_follows_the_release_schema(msrvtt):
    data = json.loads((msrvtt / "MSRVTT_data.json").read_text())
    assert {"videos", "sentences"} <= set(data)
    videos = data["videos"]
    assert [v["video_id"] for v in videos] == [f"video{i}" for i in range(50)]
    for v in videos:
        assert list(v) == ["category", "url", "video_id", "start time", "end time", "split", "id"]
        assert isinstance(v["category"], int) and isinstance(v["id"], int) and v["end time"] == 2.0
    assert Counter(v["split"] for v in videos) == {"train": 33, "validate": 2, "test": 15}
    sentences = data["sentences"]
    assert all(list(s) == ["caption", "video_id", "sen_id"] for s in sentences)
    assert [s["sen_id"] for s in sentences] == list(range(len(sentences)))
    assert Counter(s["video_id"] for s in sentences) == {f"video{i}": 5 for i in range(50)}
    train9k = _read_csv(msrvtt / "MSRVTT_train.9k.csv")
    train7k = _read_csv(msrvtt / "MSRVTT_train.7k.csv")
    test1k = _read_csv(msrvtt / "MSRVTT_JSFUSION_test.csv")
    assert (msrvtt / "MSRVTT_JSFUSION_test.csv").read_text().splitlines()[
        0
    ] == "key,vid_key,video_id,sentence"
    assert (msrvtt / "MSRVTT_train.9k.csv").read_text().splitlines()[0] == "video_id"
    assert (len(train9k), len(train7k), len(test1k)) == (45, 35, 5)
    ids9k, ids7k = {r["video_id"] for r in train9k}, {r["video_id"] for r in train7k}
    ids1k = {r["video_id"] for r in test1k}
    split = {v["video_id"]: v["split"] for v in videos}
    assert ids7k < ids9k and not ids9k & ids1k and ids9k | ids1k == set(split)
    assert all(split[i] == "test" for i in ids1k) and all(split[i] != "test" for i in ids7k)
    captions = {(s["video_id"], s["caption"]) for s in sentences}
    for j, row in enumerate(test1k):
        assert row["key"] == f"ret{j}" and row["vid_key"] == "msr" + row["video_id"][5:]
        assert (row["video_id"], row["sentence"]) in captions


def test_msrvtt_videos_decode_to_the_stated_frames(msrvtt):
    meta = json.loads((msrvtt / META_FILE).read_text())["videos"]
    for k, v in enumerate(meta):
        with av.open(str(msrvtt / "videos" / f"{v['video_id']}.mp4")) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 10 and frames[0].shape == (64, 64, 3)
        if k < 5:  # the pixels are the scene's (up to lossy coding)
            scene = Scene.from_dict(v["scene"])
            rendered = render_video(scene).frames.astype(int)
            assert np.abs(np.stack(frames).astype(int) - rendered).mean() < 8
            assert v["boxes"] == render_video(scene).boxes.tolist()


def test_same_seed_gives_identical_annotation_files(msrvtt, tmp_path):
    again = tmp_path / "again"
    other = tmp_path / "other"
    main(["msrvtt", "--out", str(again), "--num", "50", "--seed", "0", "--no-progress"])
    main(["msrvtt", "--out", str(other), "--num", "50", "--seed", "1", "--no-progress"])
    names = [
        "MSRVTT_data.json",
        "MSRVTT_train.9k.csv",
        "MSRVTT_train.7k.csv",
        "MSRVTT_JSFUSION_test.csv",
        META_FILE,
    ]
    for name in names:
        assert (msrvtt / name).read_bytes() == (again / name).read_bytes(), name
    assert (msrvtt / "MSRVTT_data.json").read_bytes() != (other / "MSRVTT_data.json").read_bytes()

    # The same pixels up to the encoder: libx264 (one thread) does not always give the same bytes for the same
    # frames (2-3 variants for some toy videos), so the decoded videos are compared, not the mp4 files.
    def decoded(root: Path) -> np.ndarray:
        with av.open(str(root / "videos" / "video3.mp4")) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(float)

    assert np.abs(decoded(msrvtt) - decoded(again)).mean() < 1.0  # variants differ by about 0.23
    assert np.abs(decoded(msrvtt) - decoded(other)).mean() > 5


def test_generation_is_idempotent_and_rebuilds_on_a_new_spec(tmp_path):
    out = tmp_path / "ds"
    generate("msrvtt", out=out, num=10, seed=0)
    stamp = (out / SPEC_FILE).stat().st_mtime_ns
    (out / "marker").write_text("kept")
    assert generate("msrvtt", out=out, num=10, seed=0) == out
    assert (out / SPEC_FILE).stat().st_mtime_ns == stamp and (out / "marker").exists()
    generate("msrvtt", out=out, num=10, seed=0, captions_per_video=2)
    assert not (out / "marker").exists()
    assert len(json.loads((out / "MSRVTT_data.json").read_text())["sentences"]) == 20
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary folders left


def test_an_interrupted_run_leaves_no_dataset(tmp_path):
    @dataclass
    class Opts:
        fail: bool = True

    @register_writer("_failing", Opts)
    def failing(ctx: WriteContext) -> None:
        (ctx.root / "half.json").write_text("{}")
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            generate("_failing", out=tmp_path / "ds", num=3)
        assert list(tmp_path.iterdir()) == []
    finally:
        WRITERS.pop("_failing")


def test_a_new_writer_registers_and_runs_from_the_cli(tmp_path):
    @dataclass
    class Opts:
        size: int = 32

    @register_writer("_labels", Opts, help="scene labels as json")
    def write_labels(ctx: WriteContext) -> None:
        rows = [labels(sample_scene(ctx.rng(i))) for i in ctx.track(range(ctx.num))]
        (ctx.root / "labels.json").write_text(json.dumps({"size": ctx.options.size, "rows": rows}))

    try:
        main(["_labels", "--out", str(tmp_path / "l"), "--num", "4", "--size", "48", "--no-progress"])
        data = json.loads((tmp_path / "l" / "labels.json").read_text())
        assert data["size"] == 48 and len(data["rows"]) == 4
    finally:
        WRITERS.pop("_labels")


def test_bad_options_give_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["msrvtt", "--out", str(tmp_path / "a"), "--size", "63"])
    assert "--size must be an even number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["msrvtt", "--out", str(tmp_path / "a"), "--lang", "fr"])
    assert "--lang must be en or zh" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["msrvtt", "--num", "5", "--out", str(tmp_path / "a")])
    assert "--num >= 10" in capsys.readouterr().err
    with pytest.raises(ValueError, match="valid options"):
        generate("msrvtt", out=tmp_path / "a", num=10, colour_count=3)
    with pytest.raises(ValueError, match="available: .*msrvtt"):
        generate("nope", out=tmp_path / "a")
    with pytest.raises(ValueError, match="negative-kinds"):
        generate("msrvtt", out=tmp_path / "a", num=10, negative_kinds="colour,smell")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a toy-world dataset"):
        generate("msrvtt", out=tmp_path / "mine", num=10)
    assert not (tmp_path / "a").exists()


def test_msrvtt_hard_negative_families(tmp_path):
    out = generate("msrvtt", out=tmp_path / "fam", num=12, seed=0, family_size=3, captions_per_video=2)
    meta = json.loads((out / META_FILE).read_text())["videos"]
    assert [v["family"] for v in meta] == [i // 3 for i in range(12)]
    for v in meta:
        anchor = meta[v["family"] * 3]
        if v is anchor:
            assert v["change"] is None
            continue
        assert v["change"]["field"].split(".")[-1] in ("colour", "direction", "kind")
        diff = [k for k, x in _leaves(anchor["scene"]) if dict(_leaves(v["scene"]))[k] != x]
        assert diff == [v["change"]["field"]]


def test_imagetext_writer_writes_bilingual_jsonl_and_images(tmp_path):
    from PIL import Image

    out = generate("imagetext", out=tmp_path / "it", num=10, seed=0, test_fraction=0.3)
    counts = {}
    for split in ("train", "test"):
        rows = {}
        for lang in ("en", "zh"):
            lines = (out / f"{split}_{lang}.jsonl").read_text(encoding="utf-8").splitlines()
            rows[lang] = [json.loads(line) for line in lines]
            for r in rows[lang]:
                assert set(r) == {"image", "caption"} and len(r["caption"]) == 3
                assert all(isinstance(c, str) and c for c in r["caption"])
                with Image.open(out / r["image"]) as im:
                    assert im.size == (64, 64)
        assert [r["image"] for r in rows["en"]] == [r["image"] for r in rows["zh"]]
        assert all(any("\u4e00" <= ch <= "\u9fff" for ch in c) for r in rows["zh"] for c in r["caption"])
        counts[split] = len(rows["en"])
    assert counts == {"train": 7, "test": 3}
    meta = json.loads((out / META_FILE).read_text())["images"]
    scene = Scene.from_dict(meta[0]["scene"])
    with Image.open(out / meta[0]["image"]) as im:
        assert np.array_equal(np.asarray(im), render_image(scene))  # PNG is lossless


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_writer_rejects_bad_shared_options(name: str) -> None:
    with pytest.raises(ValueError, match="min-objects"):
        make_options(name, min_objects=3, max_objects=2)
    fields = {f.name for f in dataclasses.fields(WRITERS[name].options)}
    if "size" in fields:
        with pytest.raises(ValueError, match="--size"):
            make_options(name, size=15)
    if "crf" in fields:
        with pytest.raises(ValueError, match="--crf"):
            make_options(name, crf=60)
