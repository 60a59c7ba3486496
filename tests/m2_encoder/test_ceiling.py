"""The toy retrieval ceiling: which images a caption's content fits, and the tie-break R@1 (hand-computed)."""

from m2_encoder.scripts.caption_ceiling import ceiling, fits


def _obj(shape, colour="red", size="big"):
    return {"shape": shape, "colour": colour, "size": size}


def _ment(shape, colour=None, size=None):
    return {"shape": shape, "colour": colour, "size": size}


def test_fits_needs_scene_and_distinct_objects():
    scene = {"scene": "beach", "objects": [_obj("circle"), _obj("square", "blue", "small")]}
    assert fits({"scene": None, "objects": [_ment("circle")]}, scene)
    assert fits({"scene": "beach", "objects": [_ment("square", "blue"), _ment("circle", size="big")]}, scene)
    assert not fits({"scene": "city", "objects": [_ment("circle")]}, scene)
    assert not fits({"scene": None, "objects": [_ment("circle", "blue")]}, scene)
    assert not fits({"scene": None, "objects": [_ment("circle"), _ment("circle")]}, scene)  # distinct


def test_ceiling_counts_ties():
    def image(scene, objs, caps):
        return {"split": "test", "scene": {"scene": scene, "objects": objs}, "captions": caps}

    a = {"en": "a circle.", "content": {"scene": None, "objects": [_ment("circle")]}}
    b = {"en": "a circle on the beach.", "content": {"scene": "beach", "objects": [_ment("circle")]}}
    meta = {
        "images": [
            image("beach", [_obj("circle")], [b]),  # fits only image 0: 1/1
            image("city", [_obj("circle")], [a]),  # "a circle." fits both, ground truth image 1: 1/2
        ]
    }
    out = ceiling(meta)
    assert out["captions"] == 2 and out["images"] == 2
    assert out["mean_fitting"] == 1.5 and out["share_unique"] == 0.5
    assert abs(out["t2i_R@1_ceiling"] - 75.0) < 1e-9
