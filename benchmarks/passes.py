"""Two passes a round over whole runs: does training each round twice over its pairs (a fresh draw of positives
each pass, the same batch) beat the default's one pass, with the 1.5B teacher?

    python benchmarks/passes.py                  # seed 42 (resumes; no LLM: its answers are committed), the table
    python benchmarks/passes.py --seeds 42,43    # a second training seed (new pairs for the LLM)
    python benchmarks/passes.py --table          # the table of what has run, training nothing

Round 1 replayed from the committed answers said yes (``soft_targets.py``'s ``top-yes-x2``; the figures are in
BENCHMARKS.md, "Soft targets"). This is quality.py's local-best run (the default recipe, 1,000 training
documents, 3 rounds, the 1.5B teacher in process on its cache with the committed answers, new pairs judged by the
LLM) with one change: every round makes twice the passes the default schedule gives it, at the same batch (so
about twice the steps). ``min_steps_per_round=16`` is not the same lever: the schedule shrinks the batch before it
adds a pass.

``--seeds`` seeds training only (the training documents and dev sample stay seed 42's, as in ``keep_share.py``,
whose ``local-best`` and ``local-best-seed43`` runs are the one-pass rows). Folders under
``.cache/bench-quality/``: ``local-x2``, ``local-x2-seed<N>``. New answers go to the teacher's cache
(``quality.py --export-judgments`` commits them, so the rows re-run with no LLM).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keep_share import reuters_run_setup, run_cells, same_documents  # noqa: E402
from quality import BASE_MODEL, COMMON, OUT, RECIPES, make_teacher  # noqa: E402

from st_lmtx.trainer import curriculum  # noqa: E402

PASSES = 2
ORIGINAL = curriculum.round_schedule


def more_passes(pairs_per_epoch, args):
    """The default schedule with ``PASSES`` times its passes at the same batch."""
    schedule = ORIGINAL(pairs_per_epoch, args)
    epochs = schedule.epochs * PASSES
    return dataclasses.replace(
        schedule, epochs=epochs, steps=-(-max(pairs_per_epoch, 1) * epochs // schedule.batch_size)
    )


def folder(seed: int) -> str:
    return "local-x2" + (f"-seed{seed}" if seed != COMMON["seed"] else "")


def run(seed: int, labels, train, test) -> None:
    from st_lmtx import LMTXArguments, LMTXTrainer

    out = OUT / folder(seed)
    run_args = LMTXArguments(output_dir=str(out), eval_k=(1, 3, 5, 10), **{**COMMON, "seed": seed}, **RECIPES["best"])
    with (
        patch("st_lmtx.trainer.curriculum.round_schedule", more_passes),
        patch("st_lmtx.trainer.run_state.sample_documents", same_documents),
        make_teacher("local", labels, train) as teacher,
    ):
        LMTXTrainer(BASE_MODEL, labels, teacher=teacher, args=run_args).fit(train, eval_data=test)


def table(seeds: list[int], labels, test) -> None:
    print(
        "| run | seed | steps per round | trained-positive precision | test P@1 per round (0 = zero-shot) | "
        "final model: the rule (rounds) | uniform average |"
    )
    print("|---|---:|---|---|---|---:|---:|")
    for seed in seeds:
        out = OUT / folder(seed)
        c = run_cells(out, labels, test)
        if c is not None:
            cells = [out.name, str(seed), c["steps"], c["precision"], c["p1"], c["final"], c["uniform"]]
            print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="42", help="training seeds, comma-separated (the same documents)")
    parser.add_argument("--table", action="store_true", help="print the table of finished runs, training nothing")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    labels, train, test = reuters_run_setup()
    if not args.table:
        for seed in seeds:
            run(seed, labels, train, test)
    table(seeds, labels, test)


if __name__ == "__main__":
    main()
