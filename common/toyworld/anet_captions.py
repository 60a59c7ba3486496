"""Toy-world writers (tsgsv: ActivityNet-Captions-format long videos with one sentence per event).

Writers register themselves with :func:`common.toyworld.writers.register_writer` when this module is imported
(``common/toyworld/__init__.py`` imports it).
"""
