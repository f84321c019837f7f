"""Processes: ``LMTXTrainer.fit`` under ``torchrun`` / ``accelerate launch`` (one process per GPU or CPU).

Only the main process (rank 0) shortlists, asks the teacher and writes files; the others train with it. The
main process sends each round's training pairs to the others as a Python object over a gloo process group
(no shared file system is needed), then every process runs ``SentenceTransformerTrainer`` on them, whose
``DistributedDataParallel`` starts all copies from rank 0's weights. Judging can take hours while the others
wait in that broadcast, hence the long timeout; if the main process dies, the launcher stops the others.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

# How long the other processes wait for the main one's next message (a round's judging, on a slow teacher).
WAIT = timedelta(days=7)


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> Processes:
        """Ranks as the launcher set them (``RANK``, ``WORLD_SIZE``); one process when there is no launcher."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            # gloo for the messages (CPU objects); NCCL, when there are GPUs, for the gradients. transformers
            # and accelerate use this group rather than creating their own.
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend, timeout=WAIT)
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def send(self, message: dict[str, Any]) -> None:
        """From the main process to all others (a no-op with one process)."""
        if self.distributed:
            dist.broadcast_object_list([message], src=0, device=torch.device("cpu"))

    def receive(self) -> dict[str, Any]:
        """In the other processes: the main process's next `send`."""
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
        return box[0]
