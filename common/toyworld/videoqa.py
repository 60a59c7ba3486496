"""Toy-world writers for snp_s3: MSRVTT-QA/MSVD-QA jsonl, MSR-VTT multiple choice, a WebVid-style corpus.

Writers register themselves with :func:`common.toyworld.writers.register_writer` when this module is imported
(``common/toyworld/__init__.py`` imports it).
"""
