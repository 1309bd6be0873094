"""`gazeheads train-tiny`: retrain the bundled tiny model from scratch (options documented by the trainer)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("train-tiny", add_help=False,
                       help="retrain the bundled tiny Qwen3-VL from scratch (gazeheads train-tiny --help lists "
                            "every option)",
                       description="Train the tiny model from scratch; every option goes to gazeheads.tiny.train.")
    p.set_defaults(run=None, passthrough=True)


def run(argv: list[str]) -> int:
    from ..tiny.train import main as train_main

    return train_main(argv, prog="gazeheads train-tiny")
