"""Command line of the toy world: ``python -m common.toyworld <format> --out DIR --num N --seed S [options]``.

Each registered writer is a sub-command whose options come from its options dataclass
(``python -m common.toyworld msrvtt --help``). An existing dataset with the same spec is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from pathlib import Path

from common.toyworld.writers import DEFAULT_ROOT, WRITERS, generate


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per registered writer."""
    parser = argparse.ArgumentParser(
        prog="python -m common.toyworld",
        description="Generate a toy-world dataset in a real dataset's format.",
    )
    sub = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, info in sorted(WRITERS.items()):
        p = sub.add_parser(name, help=info.help, description=info.help)
        p.add_argument(
            "--out", type=Path, default=None, help=f"dataset folder (default: {DEFAULT_ROOT}/{name})"
        )
        p.add_argument("--num", type=int, default=100, help="number of samples (default: 100)")
        p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        hints = typing.get_type_hints(info.options)
        for f in dataclasses.fields(info.options):
            kind = hints[f.name]
            flag = "--" + f.name.replace("_", "-")
            help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
            if kind is bool:
                p.add_argument(
                    flag,
                    dest=f.name,
                    action=argparse.BooleanOptionalAction,
                    default=f.default,
                    help=help_text,
                )
            else:
                p.add_argument(flag, dest=f.name, type=kind, default=f.default, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> Path:
    """Parse ``argv``, generate (or keep) the dataset and print its folder."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    name = args.pop("format")
    out, num, seed = args.pop("out"), args.pop("num"), args.pop("seed")
    progress = not args.pop("no_progress")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = generate(name, out=out, num=num, seed=seed, progress=progress, **args)
    except (ValueError, FileExistsError) as err:
        parser.error(f"{name}: {err}")
    print(path)
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
