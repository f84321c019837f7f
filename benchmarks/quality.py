"""LMTX end to end on Reuters-21578: train from all-MiniLM-L6-v2 on training documents without their labels,
measure on the test split.

    python benchmarks/quality.py                      # every run below, then the table
    python benchmarks/quality.py --only zero-shot,local-best
    python benchmarks/quality.py --table              # print the table from finished runs only
    python benchmarks/quality.py --signals            # each stop signal against test P@1, per finished run
    python benchmarks/quality.py --only local-best --fresh   # one run's whole teacher cost, no cached answers

Runs (teacher x recipe):

- ``zero-shot``: the base model, no training.
- ``local-*``: the real local teacher (Qwen2.5-Coder-1.5B-Instruct Q4_K_M in llama.cpp, in process, p(yes);
  the default compact prompt); ``local05-*``: the 0.5B variant.
- ``oracle-*``: ``OracleTeacher`` on the same shortlists (a perfect judge: the ceiling); ``oracle20-*``: the
  oracle with 20% of its answers flipped; ``oracle40yes-*``: 40% of the wrong labels answered "yes" (a lenient
  judge).
- recipes: ``reference`` (a random "yes" per use, every round from the base model, the reference's loss and
  optimiser) and ``best`` (the default; ``st_lmtx.arguments.RECIPES``).
- ``title-content``: an LLM-free baseline: (content, title) pairs of the same documents, the LMTX loss with
  its defaults.

Every run is an ``LMTXTrainer`` output folder under ``.cache/bench-quality/`` and resumes; the local teacher's
answers are cached in ``.cache/bench-quality/teacher-local.sqlite``, so a re-run costs training only. The
answers the local runs need are committed in ``benchmarks/judgments/reuters-local.jsonl.gz`` and imported into
that cache first, so on a fresh machine the local rows re-run with no LLM time (``--export-judgments`` writes
the file again from the cache after new runs).
Ground truth is used for the oracle (an evaluation tool), for test metrics and to measure pseudo-labels.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REUTERS = Path(os.environ.get("LMTX_DATA", REPO.parent / "shared" / "data" / "reuters21578"))
OUT = REPO / ".cache" / "bench-quality"
JUDGMENTS = REPO / "benchmarks" / "judgments" / "reuters-local.jsonl.gz"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

COMMON: dict[str, Any] = {"max_docs": 1000, "max_rounds": 3, "dev_size": 300, "patience": 3, "seed": 42}
RECIPES: dict[str, dict[str, Any]] = {
    # The reference code's recipe, with warmup as a fraction (100 warmup steps exceed a whole round here) and the
    # reference scripts' softmax weighting of the violating negatives.
    "reference": {"recipe": "reference", "warmup_steps": 0.1, "softmax_weighting": True},
    # The package's default recipe.
    "best": {"recipe": "best"},
}
# local05: the smaller Qwen2.5-Coder-0.5B teacher (st-lmtx fetch-model --model qwen2.5-coder-0.5b), its own cache.
TEACHERS = {
    "local": "local",
    "local05": "local:qwen2.5-coder-0.5b",
    "oracle": "oracle",
    "oracle20": "oracle:0.2",
    "oracle40yes": "oracle:0.4:yes",
}
# The LLM teachers' caches and committed answers.
LOCAL_FILES = {
    "local": ("teacher-local.sqlite", JUDGMENTS),
    "local05": ("teacher-local05.sqlite", JUDGMENTS.with_name("reuters-local05.jsonl.gz")),
}
METRICS = ["P@1", "P@3", "P@5", "R@5", "R@10", "nDCG@5", "PSP@5"]


def run_names() -> list[str]:
    names = ["zero-shot", "title-content"]
    names += [f"{t}-{r}" for t in TEACHERS for r in RECIPES]
    return names


def local_teacher(kind: str, cache: Path, **options: Any):
    """The in-process teacher of ``kind`` (``local``, ``local05``) on cache file ``cache``."""
    from st_lmtx.teacher import make_teacher

    return make_teacher(TEACHERS[kind], cache=cache, **options)


def make_teacher(kind: str, labels, train, fresh: bool = False, **options: Any):
    """Run ``kind``'s teacher; an LLM teacher on its cache, with the committed judgments imported and ``options``
    (``LlamaCppTeacher`` arguments)."""
    from st_lmtx.teacher import make_teacher as make

    if kind in LOCAL_FILES:
        cache, judgments = LOCAL_FILES[kind]
        if fresh:  # a cache of its own: the run pays for every answer (its own, exported, carry what they cost)
            cache, judgments = fresh_files(kind)
        # Evaluated documents are kept on disk too, so a run resumed in a later session does not read them again;
        # a fresh run keeps its own, or it would restore what other runs paid for.
        memory = OUT / ("teacher-memory-fresh" if fresh else "teacher-memory")
        teacher = local_teacher(kind, OUT / cache, memory_dir=memory, **options)
        if judgments.exists():
            report = teacher.import_judgments(judgments)
            logging.info("%s: %d committed judgments, %d new to the cache", judgments.name, report.rows, report.added)
        return teacher
    return make(TEACHERS[kind], labels=labels, documents=train)


def fresh_files(kind: str) -> tuple[str, Path]:
    """The cache and judgments file of ``--fresh`` runs: only their own answers, so that a run resumed in another
    session (after ``--export-judgments``) still counts every teacher second it cost."""
    cache, judgments = LOCAL_FILES[kind]
    return cache.replace(".sqlite", "-fresh.sqlite"), judgments.with_name(
        judgments.name.replace(".jsonl", "-fresh.jsonl")
    )


def run_folder(name: str, fresh: bool) -> str:
    """The output folder (and table row) of run ``name``: ``<name>-fresh`` for a ``--fresh`` LLM run."""
    return name + ("-fresh" if fresh else "")


def lmtx_run(name: str, labels, train, test, fresh: bool = False) -> dict[str, Any]:
    from st_lmtx import LMTXArguments, LMTXTrainer

    teacher_kind, recipe = name.split("-", 1)
    folder = run_folder(name, fresh)
    args = LMTXArguments(output_dir=str(OUT / folder), eval_k=(1, 3, 5, 10), **COMMON, **RECIPES[recipe])
    with make_teacher(teacher_kind, labels, train, fresh=fresh) as teacher:
        LMTXTrainer(BASE_MODEL, labels, teacher=teacher, args=args).fit(train, eval_data=test)
    return summarize(folder)


def summarize(name: str) -> dict[str, Any] | None:
    from st_lmtx.trainer.records import RunRecord

    path = OUT / name / "lmtx_run.json"
    finished = path.exists()
    if not finished:
        # An unfinished run (stopped, or still going): its finished rounds, from the trainer's state file.
        path = OUT / name / "lmtx-work" / "state.json"
        if not path.exists():
            return None
    run = RunRecord.read(path)
    rounds = run.trained_rounds
    if not rounds or run.best_round is None:
        return None
    final = run.final  # the average of the rounds' weights, when the recipe makes it the final model
    usage = [r.teacher_usage for r in run.rounds + ([final] if final else [])]
    dev = [r.dev_teacher_usage for r in run.rounds]
    return {
        "metrics": run.final_record.eval,
        "docs": rounds[0].pseudo_labels.documents,
        "rounds": f"{len(rounds)} (best {run.best_round}"
        + (", final = average" if final else "")
        + ")"
        + ("" if finished else ", unfinished"),
        "calls": sum(u.calls for u in usage),
        "pairs": sum(u.pairs for u in usage),
        "prompt_tokens": sum(u.prompt_tokens for u in usage),
        "teacher_s": sum(u.seconds for u in usage),
        "train_s": sum(r.train_seconds for r in rounds),
        "precision": "/".join(f"{r.precision['trained_positive_precision']:.2f}" for r in rounds),
        "yes_rate": "/".join(f"{r.pseudo_labels.yes_rate:.2f}" for r in rounds),
        # The stop metric per round (0 = zero-shot), as the run ranked its rounds.
        "signal": f"{run.stop_metric}: " + "/".join(f"{r.dev[run.stop_metric]:.2f}" for r in run.rounds),
        "per_round_p1": "/".join(f"{100 * r.eval['P@1']:.1f}" for r in run.rounds)
        + (f" (average {100 * final.eval['P@1']:.1f})" if final else ""),
        # What the stop rule's dev judging cost the teacher each round (new calls, seconds).
        "dev_cost": "/".join(f"{d.calls}:{d.seconds:.0f}" for d in dev) if all(dev) else "-",
    }


def signal_table(names: list[str]) -> None:
    """Each stop metric against test P@1 over the rounds of the finished runs: its Spearman correlation with test
    P@1 (rounds 0-N), and the round the stop rule (patience 1) would keep with it, as test P@1 under the run's
    best round."""
    from scipy.stats import spearmanr

    from st_lmtx.evaluation.llm_judged_evaluator import SIGNALS
    from st_lmtx.trainer.records import RunRecord

    print(
        "\nStop metrics (dev sample, judged by the run's teacher) against test P@1, per finished run. Each cell: "
        "Spearman over rounds 0-N / the round patience 1 keeps (its test P@1 minus the best round's).\n"
    )
    print("| run | test P@1 per round | " + " | ".join(SIGNALS) + " |")
    print("|" + "---|" * (len(SIGNALS) + 2))
    for name in names:
        path = OUT / name / "lmtx_run.json"
        if not path.exists():
            continue
        run = RunRecord.read(path)
        p1 = [r.eval["P@1"] for r in run.rounds]
        best = max(p1[1:])
        cells = []
        for signal in SIGNALS:
            values = [r.dev.get(signal) for r in run.rounds]
            if None in values or len(run.rounds) < 3:
                cells.append("-")
                continue
            rho = spearmanr(values, p1).statistic
            kept = kept_round(run, signal)
            cells.append(f"{rho:.2f} / {kept} ({100 * (p1[kept] - best):+.2f})")
        print(f"| {name} | " + "/".join(f"{100 * v:.1f}" for v in p1) + " | " + " | ".join(cells) + " |")


def kept_round(run, signal: str, patience: int = 1) -> int:
    """The round the trainer's own stop rule (``RunState``, patience 1) keeps on ``run``'s dev ``signal``."""
    from dataclasses import replace

    from st_lmtx.trainer.run_state import RunState

    state = RunState(
        OUT / "unused-state.json",
        replace(run, rounds=[], best_round=None, finished=False, stop_metric=signal, final=None),
    )  # never saved
    for record in run.rounds:
        if record.round == 0:
            state.rounds.append(record)
        elif not state.record.finished:
            state.add_round(record, patience)
    return state.record.best_round


def zero_shot(labels, train, test) -> dict[str, Any]:
    path = OUT / "zero-shot" / "result.json"
    if not path.exists():
        from st_lmtx import XMCEvaluator
        from st_lmtx.models import load_model

        metrics = XMCEvaluator(labels, test, train_truth=train.targets, show_progress_bar=True)(load_model(BASE_MODEL))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"metrics": metrics}))
    return {
        "metrics": json.loads(path.read_text())["metrics"],
        "docs": 0,
        "rounds": "-",
        "calls": 0,
        "pairs": 0,
        "prompt_tokens": 0,
        "teacher_s": 0.0,
        "train_s": 0.0,
        "precision": "-",
        "per_round_p1": "-",
        "dev_cost": "-",
        "yes_rate": "-",
        "signal": "-",
    }


def title_content(labels, train, test) -> dict[str, Any]:
    """LLM-free: each document's content is an anchor and its own title the positive; same docs, same loss class
    and optimiser (the loss with its defaults: margin 0.3, 10 negatives, mean over violating negatives)."""
    import random

    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from st_lmtx import LMTXArguments, LMTXTripletLoss, XMCEvaluator
    from st_lmtx.models import load_model

    recipe = LMTXArguments(**RECIPES["best"]).to_dict()
    epochs = 1
    path = OUT / "title-content" / "result.json"
    if not path.exists():
        rng = random.Random(COMMON["seed"])
        indices = sorted(rng.sample(range(len(train)), COMMON["max_docs"]))
        records = [json.loads(line) for line in (REUTERS / "trn.json").read_text().splitlines()]
        pairs = [
            (records[i]["content"], records[i]["title"])
            for i in indices
            if records[i]["content"] and records[i]["title"]
        ]
        model = load_model(BASE_MODEL)
        dataset = Dataset.from_dict({"anchor": [c for c, _ in pairs], "positive": [t for _, t in pairs]})
        targs = SentenceTransformerTrainingArguments(
            output_dir=str(OUT / "title-content" / "checkpoints"),
            num_train_epochs=epochs,
            per_device_train_batch_size=recipe["batch_size"],
            learning_rate=recipe["learning_rate"],
            warmup_steps=recipe["warmup_steps"],
            save_strategy="no",
            report_to="none",
            seed=COMMON["seed"],
            dataloader_pin_memory=False,
        )
        started = time.perf_counter()
        SentenceTransformerTrainer(model=model, args=targs, train_dataset=dataset, loss=LMTXTripletLoss(model)).train()
        seconds = time.perf_counter() - started
        model.save(str(OUT / "title-content" / "model"))
        metrics = XMCEvaluator(labels, test, train_truth=train.targets, show_progress_bar=True)(model)
        path.write_text(json.dumps({"metrics": metrics, "docs": len(pairs), "train_s": seconds}))
    saved = json.loads(path.read_text())
    return {
        "metrics": saved["metrics"],
        "docs": saved["docs"],
        "rounds": f"{epochs} epoch(s)",
        "calls": 0,
        "pairs": 0,
        "prompt_tokens": 0,
        "teacher_s": 0.0,
        "train_s": saved["train_s"],
        "precision": "-",
        "per_round_p1": "-",
        "dev_cost": "-",
        "yes_rate": "-",
        "signal": "-",
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\nReuters-21578 test split (3,019 documents), trained from {BASE_MODEL} on a random "
        f"{COMMON['max_docs']} of the 7,770 training documents (their labels unused), at most "
        f"{COMMON['max_rounds']} rounds, dev sample {COMMON['dev_size']}. Metrics in %, of the final model: the "
        'average of the rounds\' weights where the run averaged them ("final = average"), else the round the '
        "stop rule kept (its stop signal per round: the column of that name).\n"
    )
    head = [
        "run",
        *METRICS,
        "docs",
        "rounds",
        "P@1 per round (0 = zero-shot)",
        "teacher calls",
        "pairs judged",
        "prompt tokens",
        "teacher s",
        "training s",
        "yes-rate per round",
        "trained-positive precision per round",
        "stop signal per round",
        "dev judging per round (new calls:s)",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in results.items():
        m = r["metrics"]
        cells = [
            name,
            *[f"{100 * m[k]:.2f}" for k in METRICS],
            str(r["docs"]),
            r["rounds"],
            r["per_round_p1"],
            f"{r['calls']:,}",
            f"{r['pairs']:,}",
            f"{r['prompt_tokens']:,}",
            f"{r['teacher_s']:.0f}",
            f"{r['train_s']:.0f}",
            r["yes_rate"],
            r["precision"],
            r["signal"],
            r["dev_cost"],
        ]
        print("| " + " | ".join(cells) + " |")
    # Each answer keeps the teacher seconds it cost when produced, so these totals hold for runs resumed across
    # sessions or fed from the committed judgments (where "teacher s" above counts this process only).
    from st_lmtx.teacher import JudgmentCache

    for kind in LOCAL_FILES:
        for cache in (LOCAL_FILES[kind][0], fresh_files(kind)[0]):
            if (OUT / cache).exists():
                with JudgmentCache(OUT / cache) as c:
                    n, seconds = c.cost()
                print(
                    f"\n{cache}: {n:,} answers, {seconds:,.0f} teacher seconds when they were produced "
                    f"({seconds / max(n, 1):.3f} s an answer), every run that used it together."
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(run_names())}")
    parser.add_argument("--table", action="store_true", help="print the table of finished runs, train nothing")
    parser.add_argument(
        "--signals",
        action="store_true",
        help="print each stop signal's rank correlation with test P@1 over the finished runs' rounds",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="LLM runs in <run>-fresh folders with a cache of their own (and only their own exported "
        "answers imported): what one run costs the teacher from nothing (hours for local-best)",
    )
    parser.add_argument(
        "--export-judgments",
        action="store_true",
        help=f"write the local teacher's cached answers to {JUDGMENTS.relative_to(REPO)} and exit",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpx2", "faiss.loader", "sentence_transformers", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from st_lmtx import load_lfxmc

    if args.export_judgments:
        for kind, (cache, judgments) in [*LOCAL_FILES.items(), *((k, fresh_files(k)) for k in LOCAL_FILES)]:
            if (OUT / cache).exists():
                with local_teacher(kind, OUT / cache) as teacher:
                    n = teacher.export_judgments(judgments)
                print(f"{n} judgments -> {judgments} ({judgments.stat().st_size:,} bytes)")
        return
    labels, train = load_lfxmc(REUTERS, "trn")
    _, test = load_lfxmc(REUTERS, "tst")
    names = args.only.split(",") if args.only else run_names()
    unknown = set(names) - set(run_names())
    if unknown:
        raise SystemExit(f"unknown runs: {sorted(unknown)}")
    if args.signals:
        signal_table([run_folder(n, args.fresh and n.split("-")[0] in LOCAL_FILES) for n in names])
        return
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        fresh = args.fresh and name.split("-")[0] in LOCAL_FILES
        if args.table:
            result = summarize(run_folder(name, fresh)) if "-" in name and name.split("-")[0] in TEACHERS else None
            if name == "zero-shot" and (OUT / name / "result.json").exists():
                result = zero_shot(labels, train, test)
            if name == "title-content" and (OUT / name / "result.json").exists():
                result = title_content(labels, train, test)
        elif name == "zero-shot":
            result = zero_shot(labels, train, test)
        elif name == "title-content":
            result = title_content(labels, train, test)
        else:
            result = lmtx_run(name, labels, train, test, fresh=fresh)
        if result is not None:
            results[run_folder(name, fresh)] = result
    print_table(results)


if __name__ == "__main__":
    main()
