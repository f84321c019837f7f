"""``keep_share`` with the 1.5B teacher: does training each label on its most confidently judged documents
(the default recipe's 0.5) make the positives precise (>= 0.85) without costing test P@1, against every document
with a "yes" (1, the default before it), over two training seeds?

    python benchmarks/keep_share.py                       # every run below (each resumes), then the table
    python benchmarks/keep_share.py --shares 1 --seeds 43
    python benchmarks/keep_share.py --table               # the table of what has run, training nothing

quality.py's local runs (the default recipe, 1,000 training documents, 3 rounds, the 1.5B teacher in process on
its cache with the committed answers, new pairs judged by the LLM) with ``keep_share`` 0.5 and 1. ``--seeds``
seeds training only: the training documents and the dev sample stay seed 42's, so two runs of a share differ by
training alone. Folders under ``.cache/bench-quality/``: ``local-best`` (0.5, seed 42: quality.py's run),
``local-keep1`` (1, seed 42), then ``-seed<N>`` for another seed. Their new answers go to the teacher's cache
(``quality.py --export-judgments`` commits them, so the rows re-run with no LLM).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import BASE_MODEL, COMMON, OUT, RECIPES, REUTERS, make_teacher  # noqa: E402

from st_lmtx.trainer import run_state  # noqa: E402

SAMPLE = run_state.sample_documents


def same_documents(num_documents, args):
    """The training and dev documents of seed 42 (``COMMON``), whatever seed trains."""
    return SAMPLE(num_documents, dataclasses.replace(args, seed=COMMON["seed"]))


def folder(share: float, seed: int) -> str:
    name = "local-best" if share == 0.5 else f"local-keep{share:g}"
    return name + (f"-seed{seed}" if seed != COMMON["seed"] else "")


def run(share: float, seed: int, labels, train, test) -> None:
    from st_lmtx import LMTXArguments, LMTXTrainer

    run_args = LMTXArguments(
        output_dir=str(OUT / folder(share, seed)),
        eval_k=(1, 3, 5, 10),
        **{**COMMON, "seed": seed},
        **RECIPES["best"],
        keep_share=share,
    )
    with (
        patch("st_lmtx.trainer.run_state.sample_documents", same_documents),
        make_teacher("local", labels, train) as teacher,
    ):
        LMTXTrainer(BASE_MODEL, labels, teacher=teacher, args=run_args).fit(train, eval_data=test)


def table(shares: list[float], seeds: list[int]) -> None:
    from st_lmtx.trainer.records import RunRecord

    print(
        "| run | keep_share | seed | documents trained per round | trained-positive precision | test P@1 per round "
        "(0 = zero-shot) | final model (rounds) |"
    )
    print("|---|---:|---:|---|---|---|---:|")
    for share in shares:
        for seed in seeds:
            name = folder(share, seed)
            path = OUT / name / "lmtx_run.json"
            if not path.exists():
                continue
            run = RunRecord.read(path)
            rounds = run.trained_rounds
            trained = " / ".join(str(r.training_pairs // r.schedule.epochs) for r in rounds)
            precision = " / ".join(f"{r.precision['trained_positive_precision']:.3f}" for r in rounds)
            p1 = " / ".join(f"{100 * r.eval['P@1']:.2f}" for r in run.rounds)
            final = run.final_record
            averaged = ",".join(map(str, final.averaged_rounds or [final.round]))
            print(
                f"| {name} | {share:g} | {seed} | {trained} | {precision} | {p1} | "
                f"{100 * final.eval['P@1']:.2f} ({averaged}) |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shares", default="0.5,1", help="keep_share values, comma-separated")
    parser.add_argument("--seeds", default="42,43", help="training seeds, comma-separated (same documents)")
    parser.add_argument("--table", action="store_true", help="print the table of finished runs, training nothing")
    args = parser.parse_args()
    shares = [float(s) for s in args.shares.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "faiss.loader", "sentence_transformers", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.table:
        from st_lmtx import load_lfxmc

        labels, train = load_lfxmc(REUTERS, "trn")
        _, test = load_lfxmc(REUTERS, "tst")
        for share in shares:
            for seed in seeds:
                run(share, seed, labels, train, test)
    table(shares, seeds)


if __name__ == "__main__":
    main()
