"""``make toy-snp_s3``: the toy run in three stages, each a LightningCLI fit of the same classes.

1. pretraining on the toy WebVid-style corpus (paper.yaml + tiny.yaml: all six losses);
2. retrieval fine-tuning on the toy MSR-VTT from stage 1 (+ stages/retrieval_msrvtt.yaml +
   stages/tiny_retrieval.yaml), with ``val/t2v_R@1`` on the 1k-A-style test and ``val/mc_acc`` on the toy
   MSR-VTT multiple choice scored by ``similarity_dense``;
3. VideoQA fine-tuning from stage 1 (+ stages/qa_msrvtt.yaml + stages/tiny_qa.yaml): ``val/qa_acc``.

Extra ``--config`` overlays (``EXP=``) and arguments (``ARGS=``) are passed to every stage, after the stage's
own overlays. ``--stages pretrain,retrieval`` runs a subset; ``--exp NAME`` names the runs ``NAME-<stage>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from snp_s3.train import main as cli_main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STAGES = {
    "pretrain": [],
    "retrieval": ["stages/retrieval_msrvtt.yaml"],
    "qa": ["stages/qa_msrvtt.yaml"],
}
TINY_STAGES = {"pretrain": [], "retrieval": ["stages/tiny_retrieval.yaml"], "qa": ["stages/tiny_qa.yaml"]}


def stage_args(
    stage: str, overlays: list[str], extra: list[str], exp: str, init_from: str | None
) -> list[str]:
    cfg = ["paper.yaml", *STAGES[stage], "tiny.yaml", *TINY_STAGES[stage]]
    args = ["fit"] + [a for c in cfg for a in ("--config", str(CONFIGS / c))]
    args += [a for c in overlays for a in ("--config", c)]
    args += ["--exp", f"{exp}-{stage}", *extra]
    if init_from:
        args += ["--model.init_from", init_from]
    return args


def main(argv: list[str] | None = None) -> dict[str, str]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append", default=[], help="extra overlay(s) for every stage")
    ap.add_argument("--stages", default="pretrain,retrieval,qa")
    ap.add_argument("--exp", default=None, help="run-name prefix (default: tiny[+overlays])")
    known, extra = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    exp = known.exp or "+".join(["tiny", *(Path(c).stem for c in known.config)])
    ckpts: dict[str, str] = {}
    for stage in known.stages.split(","):
        init = ckpts.get("pretrain") if stage != "pretrain" else None
        cli = cli_main(stage_args(stage, known.config, extra, exp, init))
        path = Path(cli.trainer.log_dir or ".") / "checkpoints" / f"{stage}-final.ckpt"
        cli.trainer.save_checkpoint(path)
        ckpts[stage] = str(path)
    return ckpts


if __name__ == "__main__":
    main()
