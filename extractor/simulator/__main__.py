"""``python -m extractor.simulator``: the simulator CLI without the ukg-extract wrapper."""

from __future__ import annotations

import argparse
import sys

from .cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m extractor.simulator",
        description="Serve a simulated UKG Pro tenant on loopback until interrupted.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
