"""Each label's most confidently judged documents (0.1's ``keep_documents``) with the 1.5B teacher: does training a
label only on the share of its documents whose positive the teacher scored highest make the positives precise
(>= 0.85) without costing test P@1, against the default (every document with a "yes"), over two training seeds?

    python benchmarks/keep_share.py                       # every run below (each resumes), then the table
    python benchmarks/keep_share.py --shares 1 --seeds 43
    python benchmarks/keep_share.py --table               # the table of what has run, training nothing

quality.py's local-best run (the default recipe, 1,000 training documents, 3 rounds, the 1.5B teacher in process
on its cache with the committed answers, new pairs judged by the LLM) with one change: a round trains only the
documents whose positive (the top-scored "yes") is in the top ``share`` of its label's documents by p(yes), at
least one a label, ties kept (share 1: the default). The cut is made within each label, as in 0.1
(docs/history.md): a global cut drops every document of a label the teacher is less sure of. A yes/no teacher's
"yes" all score 1.0, so nothing is cut for it (the oracles).

``--seeds`` seeds training only: the training documents and the dev sample stay seed 42's, so two runs differ by
training alone. Folders under ``.cache/bench-quality/``: ``local-best`` (share 1, seed 42: quality.py's run),
``local-keep<share>``, then ``-seed<N>`` for another seed. Their new answers go to the teacher's cache
(``quality.py --export-judgments`` commits them, so the rows re-run with no LLM). The table adds the test P@1 of
the uniform average of each run's rounds (0.2's final model): the trainer's final model when it averages them all,
else measured once and kept in ``uniform_average.json`` beside the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import BASE_MODEL, COMMON, OUT, RECIPES, REUTERS, make_teacher  # noqa: E402

from st_lmtx import pseudo_labels  # noqa: E402
from st_lmtx.trainer import run_state  # noqa: E402

ORIGINAL = pseudo_labels.usable_documents
SAMPLE = run_state.sample_documents


def keep_share(share: float):
    """``usable_documents`` training each label on the top ``share`` of its documents by its positive's score."""

    def usable_documents(pseudo, positives):
        usable = [(d, pos, max(pos, key=lambda j: j.score)) for d, pos in ORIGINAL(pseudo, positives)]
        by_label: dict[int, list[float]] = {}
        for _, _, best in usable:
            by_label.setdefault(best.label, []).append(best.score)
        cut = {label: sorted(s, reverse=True)[max(1, math.ceil(share * len(s))) - 1] for label, s in by_label.items()}
        return [(d, pos) for d, pos, best in usable if best.score >= cut[best.label]]

    return usable_documents


def same_documents(num_documents, args):
    """The training and dev documents of seed 42 (``COMMON``), whatever seed trains."""
    return SAMPLE(num_documents, dataclasses.replace(args, seed=COMMON["seed"]))


def folder(share: float, seed: int) -> str:
    name = "local-best" if share == 1 else f"local-keep{share:g}"
    return name + (f"-seed{seed}" if seed != COMMON["seed"] else "")


def run(share: float, seed: int, labels, train, test) -> None:
    from st_lmtx import LMTXArguments, LMTXTrainer

    out = OUT / folder(share, seed)
    run_args = LMTXArguments(output_dir=str(out), eval_k=(1, 3, 5, 10), **{**COMMON, "seed": seed}, **RECIPES["best"])
    keep = keep_share(share)
    with (
        patch("st_lmtx.pseudo_labels.usable_documents", keep),
        patch("st_lmtx.trainer.curriculum.usable_documents", keep),
        patch("st_lmtx.trainer.run_state.sample_documents", same_documents),
        make_teacher("local", labels, train) as teacher,
    ):
        LMTXTrainer(BASE_MODEL, labels, teacher=teacher, args=run_args).fit(train, eval_data=test)


def uniform_average(out: Path, rounds: list[int], labels, test) -> float:
    """Test P@1 of the average of ``rounds``' weights, measured once."""
    path = out / "uniform_average.json"
    if path.exists():
        return json.loads(path.read_text())["P@1"]
    from sentence_transformers import SentenceTransformer

    from st_lmtx import XMCEvaluator
    from st_lmtx.trainer.averaging import average_models

    models = [SentenceTransformer(str(out / "lmtx-work" / f"round-{r:02d}" / "model"), device="cpu") for r in rounds]
    xmc = XMCEvaluator(labels, test, k_values=(1,), name="", write_csv=False, show_progress_bar=False)
    p1 = xmc(average_models(models))["P@1"]
    path.write_text(json.dumps({"rounds": rounds, "P@1": p1}))
    return p1


def run_cells(out: Path, labels, test) -> dict[str, str] | None:
    """A finished run's table cells: documents trained and their positives' precision per round, steps per round,
    test P@1 per round, the final model the trainer's rule picked, and the uniform average of the rounds."""
    from st_lmtx.trainer.records import RunRecord

    if not (out / "lmtx_run.json").exists():
        return None
    run = RunRecord.read(out / "lmtx_run.json")
    rounds = run.trained_rounds
    final = run.final_record
    every = [r.round for r in rounds]
    # A final model that already averages every round was measured by the trainer.
    uniform = final.eval["P@1"] if final.averaged_rounds == every else uniform_average(out, every, labels, test)
    return {
        "trained": " / ".join(str(r.training_pairs // r.schedule.epochs) for r in rounds),
        "steps": " / ".join(str(r.schedule.steps) for r in rounds),
        "precision": " / ".join(f"{r.precision['trained_positive_precision']:.3f}" for r in rounds),
        "p1": " / ".join(f"{100 * r.eval['P@1']:.2f}" for r in run.rounds),
        "final": f"{100 * final.eval['P@1']:.2f} ({','.join(map(str, final.averaged_rounds or [final.round]))})",
        "uniform": f"{100 * uniform:.2f}",
    }


def table(shares: list[float], seeds: list[int], labels, test) -> None:
    """Per run: `run_cells`."""
    print(
        "| run | share | seed | documents trained per round | trained-positive precision | test P@1 per round "
        "(0 = zero-shot) | final model: the rule (rounds) | uniform average |"
    )
    print("|---|---:|---:|---|---|---|---:|---:|")
    for share in shares:
        for seed in seeds:
            out = OUT / folder(share, seed)
            c = run_cells(out, labels, test)
            if c is not None:
                print(
                    f"| {out.name} | {share:g} | {seed} | {c['trained']} | {c['precision']} | {c['p1']} | "
                    f"{c['final']} | {c['uniform']} |"
                )


def reuters_run_setup():
    """Logging as the runs log, and Reuters' labels, training and test documents."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "faiss.loader", "sentence_transformers", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from st_lmtx import load_lfxmc

    labels, train = load_lfxmc(REUTERS, "trn")
    _, test = load_lfxmc(REUTERS, "tst")
    return labels, train, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shares", default="1,0.5", help="shares of each label's documents trained, comma-separated")
    parser.add_argument("--seeds", default="42,43", help="training seeds, comma-separated (the same documents)")
    parser.add_argument("--table", action="store_true", help="print the table of finished runs, training nothing")
    args = parser.parse_args()
    shares = [float(s) for s in args.shares.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    labels, train, test = reuters_run_setup()
    if not args.table:
        for share in shares:
            for seed in seeds:
                run(share, seed, labels, train, test)
    table(shares, seeds, labels, test)


if __name__ == "__main__":
    main()
