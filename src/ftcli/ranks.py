"""Which process this is under a launcher (torchrun, `accelerate launch`, SLURM through either),
read from the environment the launcher sets. Every room may ask; only rank 0 prints and writes.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """Rank 0: the one process that prints, logs and writes the run directory."""
    return rank() == 0
