"""SNP-S3 readers of the official formats, the caption processing and the toy DataModule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from common.toyworld import generate
from snp_s3.data import (
    CaptionVideoDataset,
    FrameLoader,
    Significance,
    SNPS3DataModule,
    TextCodec,
    build_toy_tokenizer,
    read_cc3m_tsv,
    read_didemo,
    read_mc_jsonl,
    read_msrvtt,
    read_msvd,
    read_official_qa,
    read_pretrain_jsonl,
    read_qa_jsonl,
    read_retrieval_jsonl,
    read_webvid_csv,
)
from snp_s3.scripts.mine_significant_words import competition_ranks, mine
from snp_s3.scripts.mine_significant_words import main as mine_main


def _toy_dm(tmp_path: Path, **kw) -> SNPS3DataModule:
    root = tmp_path / "toy"
    args = dict(
        task="pretrain", pretrain_file=str(root / "webvid/train.jsonl"), retrieval_root=str(root / "msrvtt"),
        mc_file=str(root / "mc/mc_test.jsonl"), qa_root=str(root / "qa"),
        tokenizer=str(root / "tokenizer.json"),
        significant_words=str(root / "significant/count_reprocess.json"),
        lemma_lists=str(root / "significant/vocab_simi_list.json"), words_top_k=40, n_clips=3, image_size=32,
        max_text_len=24, batch_size=4, eval_batch_size=4, toy=True, toy_root=str(root),
        toy_num={"webvid": 20, "msrvtt": 20, "mc": 6, "qa": 10}, toy_options={"num_frames": 4, "size": 32},
    )  # fmt: skip
    args.update(kw)
    dm = SNPS3DataModule(**args)
    dm.prepare_data()
    return dm


def test_toy_datamodule_batches_follow_the_contract(tmp_path: Path) -> None:
    dm = _toy_dm(tmp_path)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["video"].shape == (4, 3, 3, 32, 32) and b["video"].dtype == torch.uint8
    for k in ("text_ids", "text_mask", "masked_ids", "mlm_labels", "neg_ids", "neg_mask", "maskable"):
        assert b[k].shape == (4, 24), k
    assert b["word_pos"].shape == (4, 3)
    lab = b["mlm_labels"]
    assert bool((lab[lab >= 0] == b["text_ids"][lab >= 0]).all())  # labels are the raw tokens
    assert bool(((b["masked_ids"] != b["text_ids"]) <= (lab >= 0)).all())  # only labelled tokens change
    assert not bool(b["maskable"][:, 0].any())  # [CLS] is never masked
    ret, mc = [next(iter(loader)) for loader in dm.val_dataloader()]
    assert ret["text_to_video"].tolist() == [0, 1]  # 1k-A: one sentence per video, 2 test videos
    assert mc["option_ids"].shape == (4, 5, 24) and mc["answer"].shape == (4,)
    assert len(dm.test_clips) == 2  # the last tenth of 20 toy videos


def test_toy_mssm_masks_significant_words_only(tmp_path: Path) -> None:
    dm = _toy_dm(tmp_path)
    dm.setup("fit")
    sig = dm.sig
    assert {"circle", "red", "moves"} <= {dm.codec.tok.id_to_token(i) for i in sig.significant}
    fillers = {dm.codec.tok.token_to_id(w) for w in ("the", "in", "video", "a")}
    assert not (fillers & sig.significant)
    ds = dm.train_set
    n_sig = n_all = 0
    for i in range(len(ds)):
        item = ds[i]
        chosen = item["text_ids"][item["mlm_labels"] >= 0].tolist()
        n_all += len(chosen)
        n_sig += sum(c in sig.significant for c in chosen)
    assert n_all > 0 and n_sig == n_all  # toy captions always hold enough significant words


def test_random_strategy_masks_non_significant_words_too(tmp_path: Path) -> None:
    dm = _toy_dm(tmp_path, mask_strategy="random")
    dm.setup("fit")
    chosen = []
    for _ in range(5):
        for i in range(len(dm.train_set)):
            item = dm.train_set[i]
            chosen += item["text_ids"][item["mlm_labels"] >= 0].tolist()
    assert any(c not in dm.sig.significant for c in chosen)


def test_qa_stage_reads_the_toy_jsonl(tmp_path: Path) -> None:
    dm = _toy_dm(tmp_path, task="qa")
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["label"].shape == (4,) and dm.num_answers == len(
        json.loads((tmp_path / "toy/qa/ans2label.json").read_text())
    )
    (val,) = dm.val_dataloader()
    assert next(iter(val))["text_ids"].shape == (4, 24)


def test_codec_truncates_once_and_keeps_special_tokens(tmp_path: Path) -> None:
    tok = build_toy_tokenizer(["a red circle moves left in the city"] * 3, tmp_path / "t.json", 200)
    codec = TextCodec(str(tok), 5)
    ids = codec.encode("a red circle moves left in the city")
    assert len(ids) == 5 and ids[0] == codec.cls_id and ids[-1] == codec.sep_id
    ids2, mask = codec("a red")
    assert mask.tolist() == [1, 1, 1, 1, 0] and ids2[-1] == codec.pad_id
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        TextCodec(str(tmp_path / "none.json"), 5)


# ------------------------------------------------------------------------------------------ readers
def test_msrvtt_reader_on_the_toy_bundle(tmp_path: Path) -> None:
    root = generate("msrvtt", out=tmp_path / "m", num=20, seed=0, num_frames=4, size=32)
    train, test = read_msrvtt(root, "9k"), read_msrvtt(root, "1k-A")
    assert len(train) == 18 and len(test) == 2 and all(len(c.captions) == 5 for c in train)
    assert all(len(c.captions) == 1 and c.path.is_file() for c in test)
    with pytest.raises(ValueError, match="9k, 7k or 1k-A"):
        read_msrvtt(root, "5k")


def test_msvd_and_didemo_readers(tmp_path: Path) -> None:
    (tmp_path / "raw-captions.json").write_text(json.dumps({"v1": [["a", "dog"], ["a", "cat"]]}))
    (tmp_path / "test_list.txt").write_text("v1\n")
    (msvd,) = read_msvd(tmp_path, "test")
    assert msvd.captions == ["a dog", "a cat"]
    rows = [{"video": "x.mp4", "times": [[2, 3]], "description": "second"},
            {"video": "x.mp4", "times": [[0, 1]], "description": "first"}]  # fmt: skip
    (tmp_path / "test_data.json").write_text(json.dumps(rows))
    (dd,) = read_didemo(tmp_path, "test")
    assert dd.captions == ["first second"]


def test_pretraining_readers(tmp_path: Path) -> None:
    lines = [{"caption": "a", "clip_name": "v1", "sen_id": 0, "type": "video"},
             {"caption": "b", "clip_name": "v1", "sen_id": 1, "type": "video"},
             {"caption": "c", "clip_name": "img.jpg", "sen_id": 2, "type": "image"}]  # fmt: skip
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    clips = read_pretrain_jsonl(tmp_path / "p.jsonl")
    assert [(c.captions, c.kind) for c in clips] == [(["a", "b"], "video"), (["c"], "image")]
    (tmp_path / "bad.jsonl").write_text('{"caption": "a"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing key\(s\) \['clip_name'\]"):
        read_pretrain_jsonl(tmp_path / "bad.jsonl")
    with open(tmp_path / "w.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [["videoid", "contentUrl", "duration", "page_dir", "name"], ["7", "u", "PT1S", "001", "x"]]
        )
    (w,) = read_webvid_csv(tmp_path / "w.csv")
    assert w.path == tmp_path / "videos" / "001" / "7.mp4" and w.captions == ["x"]
    (tmp_path / "c.tsv").write_text("a cat\timages/1.jpg\n")
    (c,) = read_cc3m_tsv(tmp_path / "c.tsv")
    assert c.kind == "image" and c.path == tmp_path / "images/1.jpg"


def test_retrieval_qa_and_mc_jsonl_readers(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_text(
        '{"caption": "a", "clip_name": "v1", "retrieval_key": "k"}\n'
        '{"caption": "b", "clip_name": "v1", "retrieval_key": "k"}\n'
    )
    (r,) = read_retrieval_jsonl(tmp_path / "r.jsonl")
    assert r.captions == ["a", "b"]
    (tmp_path / "q.jsonl").write_text(
        '{"caption": "what?", "clip_name": "v1", "label": 3, "type": "video"}\n'
    )
    (q,) = read_qa_jsonl(tmp_path / "q.jsonl")
    assert (q.question, q.label) == ("what?", 3)
    (tmp_path / "mc.jsonl").write_text(
        '{"qid": "1", "clip_name": "v", "title": "", "answer": "2", "options": ["a", "b", "c"]}\n'
    )
    (m,) = read_mc_jsonl(tmp_path / "mc.jsonl")
    assert m.answer == 2 and m.options == ["a", "b", "c"]
    (tmp_path / "mc2.jsonl").write_text('{"qid": "1", "clip_name": "v", "answer": "5", "options": ["a"]}\n')
    with pytest.raises(ValueError, match="outside"):
        read_mc_jsonl(tmp_path / "mc2.jsonl")


def test_official_qa_reader_maps_out_of_vocabulary_answers_to_minus_one(tmp_path: Path) -> None:
    (tmp_path / "ans2label.json").write_text(json.dumps({"dog": 0}))
    qa = [{"question": "what?", "answer": "dog", "video_id": 3, "id": 0},
          {"question": "who?", "answer": "cat", "video_id": 4, "id": 1}]  # fmt: skip
    (tmp_path / "test_qa.json").write_text(json.dumps(qa))
    recs = read_official_qa(tmp_path, "test")
    assert [r.label for r in recs] == [0, -1] and recs[0].path.name == "video3.mp4"


def test_undecodable_training_video_is_replaced_and_counted(tmp_path: Path) -> None:
    dm = _toy_dm(tmp_path)
    dm.setup("fit")
    ds: CaptionVideoDataset = dm.train_set
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    ds.clips[0].path = bad
    item = ds[0]
    assert item["video"].shape == (3, 3, 32, 32) and dm.frames.bad == 1


def test_image_is_a_one_clip_video_repeated(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "x.png")
    frames = FrameLoader(16)(tmp_path / "x.png", 4, train=True)
    assert frames.shape == (4, 3, 16, 16) and bool((frames[0] == frames[3]).all())


# ------------------------------------------------------------------------------------------- mining
def test_competition_ranks_share_ties_and_zero_counts_go_last() -> None:
    assert competition_ranks([5, 0, 7, 5, 1]) == [2, 5, 1, 2, 4]


def test_mining_counts_content_words_and_drops_fillers_pieces_and_be() -> None:
    vocab = {"[PAD]": 0, "red": 1, "circle": 2, "the": 3, "##s": 4, "is": 5, "moves": 6, "slides": 7, "a": 8}
    lex = {"red": "ADJ", "circle": "NOUN", "moves": "VERB", "slides": "VERB", "is": "VERB", "the": "DET"}

    def tag(c: str) -> list[tuple[str, str]]:
        return [(w, lex.get(w, "X")) for w in c.split()]

    table, simi = mine(
        ["the red circle moves", "a red circle is here", "the circle slides"], vocab,
        tag, lambda w: "move" if w in ("moves", "slides") else w,
    )  # fmt: skip
    assert table["total_count"] == [0, 2, 3, 0, 0, 0, 1, 1, 0]
    assert table["noun_count"][2] == 3 and table["adj_count"][1] == 2 and table["verb_count"][6] == 1
    assert table["rank"] == [5, 2, 1, 5, 5, 5, 3, 3, 5]
    assert simi[6] == [7] and simi[7] == [6] and simi[1] == []


def test_mining_script_on_toy_captions_and_clear_spacy_error(tmp_path: Path, capsys) -> None:
    lines = ["a red circle moves in the city", "the big blue square grows"]
    (tmp_path / "c.txt").write_text("\n".join(lines))
    tok = build_toy_tokenizer(lines, tmp_path / "t.json", 100)
    assert (
        mine_main(
            ["--captions", str(tmp_path / "c.txt"), "--tokenizer", str(tok), "--out", str(tmp_path / "o")]
        )
        == 0
    )
    sig = Significance(tmp_path / "o/count_reprocess.json", tmp_path / "o/vocab_simi_list.json", 3)
    assert len(sig.significant) >= 3
    try:
        import spacy  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"pip install '\.\[spacy\]'"):
            mine_main(["--captions", str(tmp_path / "c.txt"), "--tokenizer", str(tok), "--pos", "spacy",
                       "--out", str(tmp_path / "o2")])  # fmt: skip


def test_msvd_pickle_conversion_refuses_objects(tmp_path: Path) -> None:
    import pickle

    from snp_s3.scripts.prepare_data import convert_msvd_captions

    pickle.dump({"v1": [["a", "dog"]]}, open(tmp_path / "raw-captions.pkl", "wb"))
    out = convert_msvd_captions(tmp_path / "raw-captions.pkl", tmp_path / "raw-captions.json")
    assert json.loads(out.read_text()) == {"v1": [["a", "dog"]]}
    pickle.dump({"v1": Path("x")}, open(tmp_path / "bad.pkl", "wb"))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        convert_msvd_captions(tmp_path / "bad.pkl", tmp_path / "bad.json")
