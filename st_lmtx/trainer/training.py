"""One round's training: ``SentenceTransformerTrainer`` with `LMTXTripletLoss` and the run's optimiser."""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from transformers import PrinterCallback, TrainerCallback, set_seed

from st_lmtx.arguments import LMTXArguments
from st_lmtx.layout import CHECKPOINTS_DIR
from st_lmtx.losses.lmtx_triplet_loss import LMTXTripletLoss
from st_lmtx.trainer.processes import Processes
from st_lmtx.trainer.records import RoundSchedule

logger = logging.getLogger(__name__)


# A round's batch never shrinks below this: in-batch negatives need company.
MIN_SCALED_BATCH = 32


def round_schedule(pairs_per_epoch: int, args: LMTXArguments) -> RoundSchedule:
    """The round's batch and passes, so that it trains at least ``args.min_steps_per_round`` steps.

    A small round first gets a smaller batch (down to 32, or its pair count if smaller, but never below
    ``num_negatives + 1`` nor above ``batch_size``), then more passes, each with a fresh draw of positives. With
    ``min_steps_per_round=0`` it is one pass at ``batch_size``. Example: 280 pairs, batch 128, 8 minimum steps
    -> batch 35, one pass, 8 steps (instead of 3 steps, too few for any warmup to end).
    """
    batch, epochs, wanted = args.batch_size, 1, args.min_steps_per_round
    n = max(pairs_per_epoch, 1)
    if wanted and math.ceil(n * epochs / batch) < wanted:
        floor = min(batch, max(min(MIN_SCALED_BATCH, n), args.num_negatives + 1))
        batch = max(floor, min(batch, math.ceil(n * epochs / wanted)))
        while math.ceil(n * epochs / batch) < wanted:  # a pass more until the steps are there (few passes)
            epochs += 1
    return RoundSchedule(batch, epochs, math.ceil(n * epochs / batch))


def make_loss(model: SentenceTransformer, args: LMTXArguments) -> LMTXTripletLoss:
    return LMTXTripletLoss(
        model, margin=args.margin, num_negatives=args.num_negatives, softmax_weighting=args.softmax_weighting
    )


@dataclass(frozen=True)
class TrainingExtras:
    """What a user hands every round's ``SentenceTransformerTrainer``: their own training arguments (every field
    but those LMTX sets a round: the output folder, one epoch, the batch, learning rate, warmup and seed, no
    checkpoints) and their callbacks."""

    training_args: SentenceTransformerTrainingArguments | None = None
    callbacks: tuple[TrainerCallback, ...] = ()


def round_training_args(
    args: LMTXArguments,
    extras: TrainingExtras,
    output_dir: Path,
    per_device: int,
    warmup: int,
    steps: int,
    world_size: int,
    is_main: bool,
) -> SentenceTransformerTrainingArguments:
    """A round's ``SentenceTransformerTrainingArguments``: the user's (``extras``) or the package's, with the
    fields each round sets."""
    round_fields = {
        "output_dir": str(output_dir / CHECKPOINTS_DIR),
        "num_train_epochs": 1,  # a round's passes are in the dataset: a fresh positive draw per pass
        "per_device_train_batch_size": per_device,
        "learning_rate": args.learning_rate,
        "warmup_steps": warmup,
        "seed": args.seed,
        "save_strategy": "no",
        "disable_tqdm": not (args.show_progress_bar and is_main),
        # Without this accelerate treats several CPU processes as one (each would train on everything alone).
        "use_cpu": world_size > 1 and not torch.cuda.is_available(),
    }
    if extras.training_args is not None:
        training_args = dataclasses.replace(extras.training_args, **round_fields)
    else:
        training_args = SentenceTransformerTrainingArguments(
            **round_fields,
            lr_scheduler_type="linear",
            report_to="none",
            logging_steps=max(1, steps // 10),
            dataloader_pin_memory=torch.cuda.is_available(),
        )
    return training_args


def round_warmup(args: LMTXArguments, steps: int) -> float:
    """The warmup steps of a round of ``steps`` steps: ``args.warmup_steps``, a fraction of the round when below 1."""
    # A fraction becomes ceil(fraction x steps) warmup steps, and linear warmup's first step has learning rate 0:
    # a one-step round would not move the model at all. Warmup never takes the whole round.
    if args.warmup_steps < 1:
        return min(math.ceil(args.warmup_steps * steps), max(steps - 1, 0))
    if args.warmup_steps > steps:
        logger.warning(
            "warmup_steps=%d exceeds this round's %d training steps: the learning rate never reaches %.1e. "
            "For small runs pass a fraction (e.g. warmup_steps=0.1).",
            args.warmup_steps,
            steps,
            args.learning_rate,
        )
    return args.warmup_steps


def train_round(
    model: SentenceTransformer,
    dataset: Dataset,
    args: LMTXArguments,
    output_dir: Path,
    world_size: int = 1,
    is_main: bool = True,
    batch_size: int | None = None,
    extras: TrainingExtras = TrainingExtras(),
) -> float:
    """Train ``model`` in place for one pass over ``dataset`` (its rows already hold the round's passes);
    returns the seconds it took. ``batch_size``: the round's global batch (default ``args.batch_size``);
    ``extras``: the user's training arguments and callbacks.

    With several processes, the batch stays the global batch (each process takes its share), so a recipe
    means the same number of steps at any process count; in-batch negatives come from each process's share.
    """
    set_seed(args.seed)
    batch_size = batch_size or args.batch_size
    per_device = max(1, batch_size // world_size)
    if batch_size % world_size:
        logger.warning(
            "batch_size=%d is not a multiple of %d processes: the global batch is %d",
            batch_size,
            world_size,
            per_device * world_size,
        )
    steps = -(-len(dataset) // (per_device * world_size))
    warmup = round_warmup(args, steps)
    training_args = round_training_args(args, extras, output_dir, per_device, warmup, steps, world_size, is_main)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        loss=make_loss(model, args),
        callbacks=list(extras.callbacks) or None,
    )
    if training_args.disable_tqdm:  # without bars transformers prints every log line instead: quiet means quiet
        trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    if is_main:
        shutil.rmtree(output_dir / CHECKPOINTS_DIR, ignore_errors=True)
    return time.perf_counter() - started


class RoundTrainer:
    """A run's ``train(model, dataset, round folder, batch size) -> seconds``: `train_round` in this process, and
    under a launcher in every process (the others receive the round's rows and train with this one; DDP starts
    them from its weights). ``training``: inside a round's training, where a failure reaches the others through
    the collective rather than a message."""

    def __init__(self, args: LMTXArguments, extras: TrainingExtras, processes: Processes) -> None:
        self.args, self.extras, self.processes = args, extras, processes
        self.training = False

    def __call__(self, model: SentenceTransformer, dataset: Dataset, folder: Path, batch_size: int) -> float:
        processes = self.processes
        processes.send({"round": folder.name, "pairs": dataset.to_dict(), "batch_size": batch_size})
        self.training = True
        seconds = train_round(
            model,
            dataset,
            self.args,
            folder,
            processes.world_size,
            is_main=True,
            batch_size=batch_size,
            extras=self.extras,
        )
        self.training = False  # left True by a failure: the others learn of it from the collective
        return seconds
