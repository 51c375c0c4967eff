"""Running under several processes: waiting for each other, rank 0 first, and launching N of us.

ftcli never synchronises processes itself beyond this: `--nproc N` hands the command to torch's
elastic launcher (what `torchrun` runs), and the processes then train through accelerate, as Trainer
does. Which process we are is `ftcli.ranks`; rank 0 is the only one that writes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from ftcli.errors import UserError
from ftcli.ranks import is_distributed, is_main, rank, world_size

__all__ = ["world_size", "rank", "is_distributed", "is_main", "use_cpu", "shards_the_model", "check_engine",
           "start", "barrier", "main_process_first", "share_from_main", "finish", "launch", "launch_finetune", "exit_code_of"]


def use_cpu() -> bool:
    """Whether the processes must train on CPU. A launcher's env alone does not make Trainer use
    gloo on a machine without GPUs: with default TrainingArguments, `torchrun --nproc_per_node 2`
    starts two independent world_size=1 trainings that write the same output_dir."""
    import torch

    return is_distributed() and not torch.cuda.is_available()


def shards_the_model(section) -> bool:
    """FSDP or DeepSpeed: the engine, not each process, holds the model (`distributed:` section)."""
    return section is not None and bool(section.fsdp or section.deepspeed)


def check_engine(section) -> None:
    """FSDP and DeepSpeed run on GPUs only. On CPU accelerate quietly falls back to plain DDP, and a
    user would believe their model sharded: say so instead."""
    import torch

    if not shards_the_model(section) or torch.cuda.is_available():
        return

    engine = "distributed.fsdp" if section.fsdp else "distributed.deepspeed"
    raise UserError(f"{engine} needs GPUs, and this machine has none",
                    hint="leave the distributed section out: on CPU, --nproc N trains with DDP (gloo)")


def start() -> None:
    """Join the process group now (as Trainer would later), so that preparation before training
    can already wait for rank 0. accelerate picks the backend (gloo on CPU, nccl on GPUs)."""
    if not is_distributed():
        return
    _stop_with_the_launcher()
    from accelerate import PartialState

    PartialState(cpu=use_cpu())


def _stop_with_the_launcher() -> None:
    """torchrun starts each rank in a session of its own, so a killed launcher leaves its ranks
    training on, unseen. A watcher thread sends this process one SIGTERM when its parent (the
    launcher) is gone: it then saves a checkpoint and stops, as on Ctrl-C."""
    import threading
    import time

    launcher = os.getppid()

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="ftcli-launcher-watch", daemon=True).start()


def barrier() -> None:
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_process_first():
    """Rank 0 runs the block first (filling the data caches, training a tokenizer); the others
    then run it and find the work done."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def share_from_main(compute):
    """`compute()` on rank 0, sent to every rank. An exception raised there is raised on every
    rank too (marked as already reported), so no rank waits forever for a failed rank 0."""
    if not is_distributed():
        return compute()
    import torch.distributed as dist

    box = [None]
    if is_main():
        try:
            box[0] = ("ok", compute())
        except Exception as exc:  # sent on, then raised here as well
            box[0] = ("error", exc)
    dist.broadcast_object_list(box, src=0)
    kind, payload = box[0]
    if kind == "error":
        if not is_main():
            payload.reported_by_rank0 = True
        raise payload
    return payload


def finish() -> None:
    """Leave the process group cleanly once every rank is done (no warning from torch at exit)."""
    if not is_distributed():
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def launch(nproc: int, command: list[str]) -> int:
    """Run `python -m ftcli COMMAND...` in `nproc` processes on this machine through torch's elastic
    launcher (the same code as `torchrun --standalone --nproc_per_node N`). Returns the exit code:
    that of the first failing rank, so a recipe error still exits 2."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # The launcher's own log lines (rendezvous details, "failed (exitcode: 2)" after a recipe error
    # the rank already explained) are noise here; what failed is reported below.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    # Share the cores between the processes (torchrun would give each one thread, and warn).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "ftcli", *command])
    try:
        run(args)
    except ChildFailedError as exc:
        # Once one rank fails the launcher stops the others with SIGTERM: an exit code of our own
        # (2 for a recipe error) says more than those, so it comes first.
        failed = sorted((code < 0, rank, code) for rank, f in exc.failures.items() if (code := f.exitcode) != 0)
        _, rank, code = failed[0] if failed else (False, 0, 1)
        if code < 0 or code not in (1, 2, 3, 130):  # killed, or died without one of our messages
            print(f"error: process rank {rank} exited with code {code}", file=sys.stderr, flush=True)
        return exit_code_of(code)
    except SignalException as exc:  # the launcher itself was interrupted; it has stopped the processes
        return exit_code_of(-exc.sigval)
    return 0


def launch_finetune(nproc: int, recipe: Path, overrides: list[str], overwrite: bool) -> int:
    """`ftcli finetune RECIPE` in `nproc` processes (the recipe was checked already, in this process)."""
    if is_distributed():
        raise UserError("--nproc starts its own processes; under torchrun or accelerate launch, leave it out")
    command = ["finetune", str(recipe), *(f"--set={s}" for s in overrides), *(["--overwrite"] if overwrite else [])]
    return launch(nproc, command)


def exit_code_of(code: int) -> int:
    """A child killed by a signal has a negative exit code; report it the shell's way (130 for SIGINT)."""
    if code < 0:
        return 130 if -code == signal.SIGINT else 128 - code
    return code
