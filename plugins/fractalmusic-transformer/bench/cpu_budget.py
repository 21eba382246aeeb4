"""Run `fmusic` with `--max-minutes` counted in this process's CPU time instead of wall-clock time.

On a machine shared with other jobs, a wall-clock budget gives each run whatever CPU the others leave it. This
wrapper makes the trainer's clock `time.process_time()` (CPU seconds of all this process's threads), so two runs
given the same `--max-minutes` get the same amount of computation however busy the machine is:

    python plugins/fractalmusic-transformer/bench/cpu_budget.py train --repr abc --generator transformer \\
        --max-minutes 5 --output-dir runs/folk-transformer

`time.monotonic` is replaced by `time.process_time` for the whole process before fractalmusic is imported (the
trainer's meters bind it at import); the reported tokens/s are then tokens per CPU-second.
"""
from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> None:
    time.monotonic = time.process_time
    from fractalmusic.cli import main as fmusic

    fmusic(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
