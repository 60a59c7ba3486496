"""TPMCLLitModule: the training step's losses, the evaluation protocol and the optimiser groups."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.tpm_cl.test_model import TINY, _batch
from tpm_cl.losses import infonce_loss, negnce_loss
from tpm_cl.metrics import retrieval_metrics
from tpm_cl.model import TextFeatures, VideoFeatures
from tpm_cl.module import TPMCLLitModule


def _lit(**kwargs) -> TPMCLLitModule:
    torch.manual_seed(0)
    return TPMCLLitModule(TINY, **kwargs)


def _train_batch():
    ids, weight, pixels, mask = _batch(TINY)
    return {
        "video": pixels,
        "video_mask": mask,
        "text_ids": ids,
        "text_weight": weight,
        "text_to_video": torch.arange(3),
        "family": torch.tensor([0, 0, 1]),
    }


@pytest.mark.parametrize("loss_type", ["negnce", "infonce"])
def test_training_step_is_nce_plus_tpm(loss_type: str) -> None:
    lit = _lit(loss_type=loss_type, tpm_weight=0.5)
    lit.log = lambda *a, **k: None  # no trainer attached
    batch = _train_batch()
    loss = lit.training_step(batch, 0)
    text, video = lit._encode(batch)
    sim = lit.model.similarity(text, video)
    nce = negnce_loss(sim) if loss_type == "negnce" else infonce_loss(sim)
    tpm, _ = lit.model.tpm_loss(text, video)
    torch.testing.assert_close(loss, nce + 0.5 * tpm)


def test_bad_loss_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="loss_type"):
        TPMCLLitModule(TINY, loss_type="triplet")


def test_evaluation_blocks_equal_one_matrix_and_family_metrics_appear() -> None:
    lit = _lit(eval_block=2, dual_softmax_eval=True).eval()
    logged = {}
    lit.log_dict = lambda d, **k: logged.update(d)
    lit.log = lambda *a, **k: None
    batch = _train_batch()
    lit._eval_start()
    # two evaluation batches: videos 0-1 with texts (0, 0, 1), then video 2 with one text
    first = {
        **batch,
        "video": batch["video"][:2],
        "video_mask": batch["video_mask"][:2],
        "family": torch.tensor([0, 0]),
    }
    first["text_to_video"] = torch.tensor([0, 0, 1])
    second = {k: v[2:] for k, v in batch.items()}
    second["text_to_video"], second["family"] = torch.tensor([0]), torch.tensor([1])
    lit._eval_step(first)
    lit._eval_step(second)
    e = lit._eval
    text = TextFeatures(torch.cat(e["words"]), torch.cat(e["weight"]), torch.cat(e["sentence"]))
    tokens = torch.cat(e["tokens"])
    video = VideoFeatures(tokens, tokens, torch.cat(e["mask"]))
    with torch.no_grad():
        full = lit.model.similarity(text, video)
    torch.testing.assert_close(lit.similarity_matrix(text, video), full)
    out = lit._eval_end("val")
    want = retrieval_metrics(
        full, torch.tensor([0, 0, 1, 2]), torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1])
    )
    assert out["val/t2v_R@1"] == want["t2v_R@1"] and out["val/v2t_MnR"] == want["v2t_MnR"]
    assert "val/fam_t2v_R@1" in out and "val/dsl_t2v_R@1" in out and "val/dsl_v2t_R@1" in out
    assert logged == out


def test_clip_gets_the_reduced_learning_rate() -> None:
    lit = _lit(lr=1e-4, clip_lr_coef=1e-3)

    class _Trainer:
        estimated_stepping_batches = 10

    lit._trainer = _Trainer()  # type: ignore[assignment]
    opt = lit.configure_optimizers()["optimizer"]
    lrs = {round(g["lr"], 12) for g in opt.param_groups}
    assert lrs == {1e-4, 1e-7}
    n_params = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_params == sum(p.numel() for p in lit.parameters() if p.requires_grad)


def test_wti_and_meanp_variants_train() -> None:
    lit = TPMCLLitModule(replace(TINY, interaction="wti", temporal="meanP", partial_type=3))
    lit.log = lambda *a, **k: None
    loss = lit.training_step(_train_batch(), 0)
    loss.backward()
    assert lit.model.text_weight_fc.weight.grad is not None and lit.model.temporal is None


def test_evaluation_switches_stay_out_of_checkpoint_hparams() -> None:
    lit = _lit(dual_softmax_eval=True, eval_block=7)
    assert lit.dual_softmax_eval and lit.eval_block == 7
    assert not {"dual_softmax_eval", "eval_block", "cpu_threads"} & set(lit.hparams)


def test_predict_ranks_videos_from_a_checkpoint(tmp_path, capsys) -> None:
    import lightning

    from common.toyworld import generate
    from tpm_cl.predict import main as predict

    root = generate("msrvtt", out=tmp_path / "toy", num=10, seed=0, num_frames=4, size=32)
    lit = _lit()
    ckpt = tmp_path / "model.ckpt"
    torch.save(
        {
            "state_dict": lit.state_dict(),
            "hyper_parameters": dict(lit.hparams),
            "datamodule_hyper_parameters": {"image_size": 16, "pos": "lexicon"},
            "pytorch-lightning_version": lightning.__version__,
        },
        ckpt,
    )
    png = tmp_path / "out.png"
    videos = str(root / "videos")
    predict(["--ckpt", str(ckpt), "--text", "a red circle", "--videos", videos, "--png", str(png)])
    out = capsys.readouterr().out
    assert out.count(".mp4  S=") == 5 and png.stat().st_size > 0
    predict(["--ckpt", str(ckpt), "--video", str(root / "videos" / "video0.mp4"), "--captions", "a", "b c"])
    assert capsys.readouterr().out.count("S=") == 2
