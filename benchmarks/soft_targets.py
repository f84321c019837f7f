"""Soft targets: does training on the teacher's p(yes) over the whole shortlist beat training on its top "yes"?

LMTX round 1 on Reuters-21578, replayed from committed answers (no LLM): the training sample of ``quality.py``
(1,000 documents, seed 42), each document's top-10 labels under all-MiniLM-L6-v2 (`mine_shortlists`), the 1.5B
teacher's verdicts and p(yes) on them read back from ``benchmarks/judgments/reuters-local.jsonl.gz``
(`judge_shortlists` with a teacher that answers from that file), then one round of training from the base model
with the `best` recipe's settings (batch, learning rate, warmup, at least 8 steps) and test P@1 on the 3,019 test
documents. Targets:

- ``top-yes``: the default: `build_lmtx_dataset` (the top-scored "yes", `LMTXTripletLoss`);
- ``weighted-yes``: every "yes" a candidate positive, drawn with probability proportional to its p(yes);
- ``kl``: `build_distillation_dataset` alone, sentence-transformers' ``DistillKLDivLoss`` (targets: each label's
  share of the shortlist's p(yes); student temperature 0.05);
- ``top-yes+kl``: both datasets, a loss each (sentence-transformers' multi-dataset training), twice the steps;
- ``top-yes-x2``: ``top-yes`` over two passes: the same steps as ``top-yes+kl``, without the distillation.

``--teacher oracle20`` replays the noisy oracle (20% of answers flipped; deterministic) instead of the 1.5B.
Each (target, seed) result is kept in ``.cache/bench-soft/``; a rerun measures only what is missing.

    python benchmarks/soft_targets.py                       # 5 targets x seeds 42, 43: about 100 minutes
    python benchmarks/soft_targets.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REUTERS = Path(os.environ.get("LMTX_DATA", REPO.parent / "shared" / "data" / "reuters21578"))
OUT = REPO / ".cache" / "bench-soft"
JUDGMENTS = REPO / "benchmarks" / "judgments" / "reuters-local.jsonl.gz"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TARGETS = ("top-yes", "kl", "top-yes+kl", "weighted-yes", "top-yes-x2")
# quality.py's run settings: its training sample and round 1 are what is replayed.
COMMON: dict[str, Any] = {"max_docs": 1000, "max_rounds": 3, "dev_size": 300, "patience": 3, "seed": 42}
STUDENT_TEMPERATURE = 0.05


def replay_teacher(path: Path):
    """A teacher answering each pair as the committed file does; a pair it does not hold is an error."""
    from st_lmtx.teacher.base import Answered, Judgment, Teacher
    from st_lmtx.teacher.cache import doc_hash
    from st_lmtx.teacher.judgments import read_judgments
    from st_lmtx.teacher.prompts import as_prompt

    class Replay(Teacher):
        def __init__(self) -> None:
            super().__init__(show_progress_bar=False)
            self.prompt = as_prompt(None)  # the answers' prompt: its view of a document keys them
            self.recorded = {(r[1], r[2]): (r[3], r[4]) for r in read_judgments(path)[1]}

        @property
        def model_name(self) -> str:
            return f"replay-{path.name}"

        @property
        def graded(self) -> bool:
            return True

        def _judge_documents(self, pending, emit, run) -> None:
            for item in pending:
                for j in item.positions:
                    answer = self.recorded.get((doc_hash(item.doc), item.labels[j]))
                    if answer is None:
                        raise RuntimeError(f"{path.name} holds no answer for a pair round 1 asks")
                    emit([Answered(item, j, Judgment(item.labels[j], answer[0], answer[1], True))])

    return Replay()


def judged_round_one(teacher_name: str):
    """Round 1's judged shortlists (saved after the first time)."""
    from datasets import load_from_disk

    from st_lmtx import LMTXArguments, OracleTeacher, judge_shortlists, load_lfxmc, mine_shortlists
    from st_lmtx.models import load_model
    from st_lmtx.trainer.run_state import sample_documents

    path = OUT / f"judged-{teacher_name}"
    if path.exists():
        return load_from_disk(str(path))
    labels, docs = load_lfxmc(REUTERS, "trn")
    train, _ = sample_documents(len(docs), LMTXArguments(output_dir=str(OUT), **COMMON))
    train_docs = docs.subset(train)
    shortlists = mine_shortlists(load_model(BASE_MODEL), labels, train_docs, k=10)
    if teacher_name == "local":
        teacher = replay_teacher(JUDGMENTS)
    else:
        teacher = OracleTeacher(labels, train_docs, flip_fraction=0.2)
    judged = judge_shortlists(teacher, shortlists)
    judged.save_to_disk(str(path))
    return judged


def weighted_yes(judged, epochs: int, seed: int):
    """`build_lmtx_dataset`'s rows with each positive drawn among the "yes" labels in proportion to p(yes)."""
    from st_lmtx.pseudo_labels import PseudoLabels, TrainingPair, label_texts, pairs_to_dataset

    rng = random.Random(seed)
    pseudo = PseudoLabels.from_dataset(judged)
    pairs = [
        TrainingPair(
            d.doc, rng.choices(d.yes, weights=[max(j.score, 1e-6) for j in d.yes])[0].label, [j.label for j in d.yes]
        )
        for _ in range(epochs)
        for d in pseudo.docs
        if d.yes
    ]
    return pairs_to_dataset(pairs, list(judged["document"]), label_texts(judged))


def train_and_measure(judged, target: str, seed: int) -> dict[str, Any]:
    from datasets import DatasetDict
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
    from transformers import set_seed

    from st_lmtx import LMTXArguments, XMCEvaluator, build_distillation_dataset, build_lmtx_dataset, load_lfxmc
    from st_lmtx.models import load_model
    from st_lmtx.pseudo_labels import PseudoLabels, usable_documents
    from st_lmtx.trainer.training import (
        TrainingExtras,
        make_loss,
        round_schedule,
        round_training_args,
        round_warmup,
    )

    args = LMTXArguments(output_dir=str(OUT / "run"), **{**COMMON, "seed": seed})
    set_seed(seed)
    model = load_model(BASE_MODEL)
    usable = len(usable_documents(PseudoLabels.from_dataset(judged), args.positives))
    schedule = round_schedule(usable, args)
    draw_seed = seed + 1  # the trainer's round-1 seed
    datasets, losses = {}, {}
    if target in ("top-yes", "top-yes+kl", "top-yes-x2"):
        passes = schedule.epochs * (2 if target == "top-yes-x2" else 1)
        datasets["lmtx"] = build_lmtx_dataset(judged, args.positives, epochs=passes, seed=draw_seed)
    if target == "weighted-yes":
        datasets["lmtx"] = weighted_yes(judged, schedule.epochs, draw_seed)
    if "lmtx" in datasets:
        losses["lmtx"] = make_loss(model, args)
    if target in ("kl", "top-yes+kl"):
        datasets["kl"] = build_distillation_dataset(judged)
        losses["kl"] = DistillKLDivLoss(model, student_temperature=STUDENT_TEMPERATURE)
    steps = sum(-(-len(d) // schedule.batch_size) for d in datasets.values())
    warmup = round_warmup(args, steps)
    training_args = round_training_args(
        args, TrainingExtras(), OUT / "run", schedule.batch_size, warmup, steps, world_size=1, is_main=True
    )
    single = len(datasets) == 1
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args,
        train_dataset=next(iter(datasets.values())) if single else DatasetDict(datasets),
        loss=next(iter(losses.values())) if single else losses,
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    labels, test = load_lfxmc(REUTERS, "tst")
    metrics = XMCEvaluator(labels, test, k_values=(1, 5), write_csv=False)(model)
    return {
        "target": target,
        "seed": seed,
        "rows": {k: len(v) for k, v in datasets.items()},
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "P@1": round(100 * metrics["P@1"], 2),
        "P@5": round(100 * metrics["P@5"], 2),
    }


def table(teacher_name: str) -> str:
    results = [json.loads(p.read_text()) for p in sorted(OUT.glob(f"{teacher_name}-*.json"))]
    lines = [
        f"Round 1 on Reuters-21578 from the {teacher_name} teacher's answers, test P@1 / P@5 (%):",
        "",
        "| target | rows | steps | P@1 (seed 42) | P@1 (seed 43) | mean P@1 | P@5 mean |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for target in TARGETS:
        runs = {r["seed"]: r for r in results if r["target"] == target}
        if not runs:
            continue
        one = next(iter(runs.values()))
        p1 = [runs[s]["P@1"] for s in (42, 43) if s in runs]
        cells = " | ".join(f"{runs[s]['P@1']:.2f}" if s in runs else "-" for s in (42, 43))
        rows = " + ".join(f"{n} {k}" for k, n in one["rows"].items())
        p5 = statistics.fmean(r["P@5"] for r in runs.values())
        lines.append(f"| {target} | {rows} | {one['steps']} | {cells} | {statistics.fmean(p1):.2f} | {p5:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--seeds", default="42,43")
    parser.add_argument("--teacher", default="local", choices=("local", "oracle20"))
    parser.add_argument("--table", action="store_true", help="print the table from saved results only")
    a = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not a.table:
        judged = judged_round_one(a.teacher)
        for seed in map(int, a.seeds.split(",")):
            for target in a.targets.split(","):
                path = OUT / f"{a.teacher}-{target}-{seed}.json"
                if not path.exists():
                    result = train_and_measure(judged, target, seed)
                    path.write_text(json.dumps(result))
                    print(json.dumps(result), flush=True)
    print(table(a.teacher))


if __name__ == "__main__":
    main()
