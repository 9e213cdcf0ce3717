"""The ``nba`` command: every package's commands, gathered.

    serve, channel-demo          engine/cli.py       (serving)
    train, evaluate, promote     training/cli.py     (offline learning and evaluation)
    simulate, demo, calibrate    simulators/cli.py   (the customer simulator)
"""

from __future__ import annotations

import sys

from engine import cli as engine_cli
from simulators import cli as simulators_cli
from training import cli as training_cli


def main(argv: list[str] | None = None) -> int:
    return engine_cli.run(argv, [engine_cli.add_commands, training_cli.add_commands, simulators_cli.add_commands])


if __name__ == "__main__":
    sys.exit(main())
