"""Thin, paper-agnostic building blocks shared by every paper of the repository.

Nothing in here imports a paper. Modules: ``contrastive`` (exact tiled and grouped contrastive losses),
``kernels`` (fused GPU kernels behind the same API), ``video`` (frame-exact decoding and sampling),
``toyworld`` (the seeded generator of every paper's default data), ``cli`` (LightningCLI with the
project's loggers) and ``report`` (the cross-run comparison table and plot).
"""
