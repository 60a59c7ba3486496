"""Toy-world writers (pink_rc: RefCOCO-format and Pink-instruction-format images with several objects).

Writers register themselves with :func:`common.toyworld.writers.register_writer` when this module is imported
(``common/toyworld/__init__.py`` imports it).
"""
