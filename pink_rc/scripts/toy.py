"""``make toy-pink_rc``: the toy chain, stage 0 (toy CLIP) -> stage 1 (projector) -> stage 2 (RC tuning).

``python -m pink_rc.scripts.toy [--config pink_rc/configs/exp/<x>.yaml] [CLI args]``: extra ``--config`` files
and arguments go to every stage; the stage-0/1 overlays (``configs/exp/toy_stage{0,1}.yaml``) come after them,
so their epochs and learning rates hold. Each stage starts from the previous stage's checkpoint.
Prints the stage-2 run folder at the end.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pink_rc.train import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def run_stage(stage: int, extra: list[str], init_from: str | None, exp: str) -> str:
    args = ["fit", "--config", str(CONFIGS / "paper.yaml"), "--config", str(CONFIGS / "tiny.yaml"), *extra]
    if stage < 2:  # the stage-0/1 recipe comes last: extra overlays shape stage 2 and the shared sizes
        args += ["--config", str(CONFIGS / "exp" / f"toy_stage{stage}.yaml")]
    args += ["--exp", f"{exp}-stage{stage}" if stage < 2 else exp]
    if init_from:
        args += ["--model.init_from", init_from]
    t0 = time.time()
    cli = main(args)
    ckpt = str(Path(cli.trainer.log_dir) / "checkpoints" / f"stage{stage}.ckpt")
    cli.trainer.save_checkpoint(ckpt)
    print(f"[toy] stage {stage} done in {time.time() - t0:.0f} s: {ckpt}", flush=True)
    return ckpt


def chain(argv: list[str]) -> str:
    """Run the three stages; returns the stage-2 checkpoint path."""
    overlays = [Path(argv[i + 1]).stem for i, a in enumerate(argv[:-1]) if a == "--config"]
    exp = "+".join(["tiny", *overlays])
    os.environ.pop("ANTMM_RUN_VERSION", None)
    ckpt = None
    for stage in (0, 1, 2):
        ckpt = run_stage(stage, list(argv), ckpt, exp)
    return ckpt


if __name__ == "__main__":
    chain(sys.argv[1:])
