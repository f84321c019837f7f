"""Calibration, positive selection and stop signals, measured on the rounds of finished `benchmarks/quality.py`
runs, from their saved shortlists and the teacher's cached answers: it asks the teacher nothing new (the cache
must hold every pair; the content-free pairs of contextual calibration are in the committed judgments) and
trains nothing.

    python benchmarks/calibration.py                         # the local-best run
    python benchmarks/calibration.py --run local-reference
    python benchmarks/calibration.py --train keep=0.5 --train calibration=contextual   # round-1 test P@1 too
    python benchmarks/calibration.py --round 3 --train seed=1 --train seed=2   # how much round 3 moves by chance
    python benchmarks/calibration.py --round 2 --train positives=student-yes   # another positive policy

Two tables:

1. For each judged round's pseudo-labels: the precision of the positive each calibration would train on (against ground
   truth, evaluation only), of the documents ``keep_documents`` keeps, and of two ways to keep more than one
   positive a document (the expected precision of a random draw among them).
2. For each finished round r: the dev signals of round r's model (its dev top-k is round r+1's shortlist, judged
   by the teacher), its test P@1, and Spearman's rank correlation of each signal with test P@1 over the rounds.
   The same signals are computed again for a *lenient* teacher: the same p(yes), with "yes" from a lower
   threshold chosen so that the judge says yes to 68% of the pairs (what the 1.5B teacher did on a domain not
   in the repository). Signals that compare labels do not change; llm_P@1 saturates.
3. Shortlist drift: how many of each later round's new pairs a wider first shortlist would have judged already.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from quality import LOCAL_FILES, OUT, REUTERS, make_teacher  # noqa: E402

LENIENT_YES_RATE = 0.68


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="local-best")
    parser.add_argument("--train", action="append", default=[], metavar="SETTING=VALUE",
                        help="also train round --round again from the round before's model with this selection "
                             "(keep=F, calibration=NAME, positives=NAME or seed=N, or several joined by commas; "
                             "repeatable) and print its test P@1")  # fmt: skip
    parser.add_argument("--round", type=int, default=1, help="the round --train redoes")
    parser.add_argument("--train-only", action="store_true", help="only the --train runs, not the tables")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from dataclasses import replace

    import numpy as np
    from scipy.stats import spearmanr

    from st_lmtx import load_lfxmc
    from st_lmtx.calibration import calibrate, logit
    from st_lmtx.evaluation.llm_judged_evaluator import SIGNALS, judged_signals
    from st_lmtx.pseudo_labels import PseudoLabels, SelectionConfig, usable_documents
    from st_lmtx.models import load_model
    from st_lmtx.shortlist import Shortlist, ShortlistMiner
    from st_lmtx.teacher import TeacherBudgetExceeded
    from st_lmtx.trainer.run_state import dev_documents

    labels, train = load_lfxmc(REUTERS, "trn")
    work = OUT / args.run / "lmtx-work"
    state = json.loads((work / "state.json").read_text())
    docs = train.subset(state["train_indices"])
    truth = [set(t) for t in docs.targets]
    kind = args.run.split("-")[0]  # the run's own teacher (local, local05, localpf) and its cache
    if kind not in LOCAL_FILES:
        raise SystemExit(f"{args.run}: not a run of an LLM teacher ({', '.join(LOCAL_FILES)})")
    teacher = make_teacher(kind, labels, train, max_calls=0)  # the cache answers, or it fails

    def judge(doc_rows: list[int], shortlist: Shortlist):
        candidates = [[labels.texts[j] for j in shortlist.for_doc(i)] for i in doc_rows]
        return teacher.judge([docs.texts[i] for i in doc_rows], candidates, desc=None).judgments

    # ---------------------------------------------------------------- 1. calibration and keep_documents
    try:
        content_free = content_free_of(teacher, labels)
    except TeacherBudgetExceeded:  # a teacher whose content-free pairs were never asked: no contextual calibration
        content_free = None
    if args.train_only:
        for variant in args.train:
            train_round_again(args.run, variant, labels, train, docs, truth, content_free, args.round)
        return
    rounds = sorted(p for p in work.glob("round-*") if (p / "pseudo_labels.jsonl").exists())
    print(f"\n{args.run}: positive selection on each round's judgments (precision against ground truth).\n")
    print("| round | yes-rate | selection | documents trained | left out | trained-positive precision |")
    print("|---:|---:|---|---:|---:|---:|")
    for folder in rounds:
        r = int(folder.name.split("-")[1])
        pseudo = PseudoLabels.load(folder / "pseudo_labels.jsonl")  # what the round chose from (accumulated)
        yes_rate = pseudo.stats()["yes_rate"]
        variants = [("none", 1.0), ("label-prior", 1.0), ("contextual", 1.0), ("none", 0.75), ("none", 0.5),
                    ("contextual", 0.5)]
        variants = [(m, k) for m, k in variants if m != "contextual" or content_free is not None]
        for method, keep in variants:
            calibrated = calibrate(pseudo, method, content_free)
            config = SelectionConfig(positives="top-yes", keep_documents=keep)
            usable = usable_documents(calibrated, config)
            left_out = len(usable_documents(calibrated, replace(config, keep_documents=1.0))) - len(usable)
            precision = np.mean([max(p, key=lambda j: j.rank_score).label in truth[d.doc] for d, p in usable])
            name = f"top-yes, calibration={method}" + (f", keep_documents={keep}" if keep < 1 else "")
            print(f"| {r} | {yes_rate:.3f} | {name} | {len(usable)} | {left_out} | {precision:.3f} |")
        # The student's ranking among the "yes" labels (student-yes: the first "yes" in shortlist order once the
        # shortlist comes from a trained model), and the shortlist's own top-1 whatever the teacher said.
        config = SelectionConfig(positives="student-yes", trained_shortlist=r > 1)
        usable = usable_documents(pseudo, config)
        precision = np.mean([p[0].label in truth[d.doc] for d, p in usable])
        print(f"| {r} | {yes_rate:.3f} | student-yes{' (= top-yes in round 1)' if r == 1 else ''} | {len(usable)} | 0 | "
              f"{precision:.3f} |")  # fmt: skip
        top1 = [d.judged[0].label in truth[d.doc] for d, _ in usable]
        print(f"| {r} | {yes_rate:.3f} | the shortlist's top-1, \"yes\" or not (same documents) | {len(usable)} | 0 | "
              f"{np.mean(top1):.3f} |")  # fmt: skip
        # More than one positive: the "yes" labels within `margin` log-odds of the top one, one drawn per use
        # (precision = the expected precision of the draw), or the labels before a log-odds gap of `gap` or more
        # that are all "yes" (else the top one).
        usable = usable_documents(pseudo, SelectionConfig(positives="random-yes"))
        rules = [(f"the \"yes\" within {m} log-odds of the top one",
                  lambda d, pos, m=m: [j for j in pos if logit(j.score) >= max(logit(k.score) for k in pos) - m])
                 for m in (0.5, 1.0)]
        rules += [(f"the labels before a log-odds gap >= {g}, if all \"yes\"", lambda d, pos, g=g: top_group(d, pos, g))
                  for g in (2.0, 3.0)]  # fmt: skip
        for name, rule in rules:
            groups = [rule(d, pos) for d, pos in usable]
            precision = np.mean([np.mean([j.label in truth[d.doc] for j in g]) for (d, _), g in zip(usable, groups)])
            print(f"| {r} | {yes_rate:.3f} | {name} ({np.mean([len(g) for g in groups]):.2f} a document) | "
                  f"{len(usable)} | 0 | {precision:.3f} |")

    # ---------------------------------------------------------------- 2. stop signals against test P@1
    # Positions in the training sample: the round folders' shortlists are the training documents'.
    position = {doc: i for i, doc in enumerate(state["train_indices"])}
    if any(doc not in position for doc in dev_documents(state)):
        raise SystemExit(f"{work.parent.name} holds its dev documents out of training: its shortlists do not cover "
                         "them, and this section measures in-sample dev samples only")
    dev = [position[doc] for doc in dev_documents(state)]
    records = {rec["round"]: rec for rec in state["rounds"]}
    per_round, per_round_lenient, test_p1 = [], [], []
    all_scores = []
    def dev_shortlist(r: int) -> Shortlist | None:
        # Round r's model's dev top-k is round r+1's shortlist; the last round's was judged by the stop rule
        # from its own model (cached), and is mined here again the same way.
        if (work / f"round-{r + 1:02d}" / "shortlist.npz").exists():
            return Shortlist.load(work / f"round-{r + 1:02d}" / "shortlist.npz")
        if r > 0 and (work / f"round-{r:02d}" / "model").exists() and "llm_P@1" in records[r].get("dev", {}):
            model = load_model(str(work / f"round-{r:02d}" / "model"))
            mined = ShortlistMiner(model, labels, show_progress_bar=False).mine([docs.texts[i] for i in dev], k=10)
            full = np.full((len(docs), mined.indices.shape[1]), -1, dtype=mined.indices.dtype)
            full[dev] = mined.indices
            return Shortlist(full, np.zeros(full.shape, dtype=np.float32))
        return None

    shortlists = {r: dev_shortlist(r) for r in sorted(records)}
    measured = [r for r in sorted(records) if shortlists[r] is not None]
    judged = {r: judge(dev, shortlists[r]) for r in measured}
    for rows in judged.values():
        all_scores += [j.score for row in rows for j in row]
    # The threshold at which the same teacher would say "yes" to LENIENT_YES_RATE of these pairs.
    lenient_cut = float(np.quantile(all_scores, 1 - LENIENT_YES_RATE))
    for r in measured:
        rows = judged[r]
        lenient = [[replace(j, verdict="yes" if j.score >= lenient_cut else "no") for j in row] for row in rows]
        per_round.append(judged_signals(rows))
        per_round_lenient.append(judged_signals(lenient))
        test_p1.append(records[r]["eval"]["P@1"])
    print(f"\n{args.run}: dev signals ({len(dev)} documents, top-{len(judged[measured[0]][0])}) per round, against test "
          f"P@1. Lenient: the same scores, \"yes\" from p >= {lenient_cut:.3f} ({LENIENT_YES_RATE:.0%} yes).\n")  # fmt: skip
    head = ["round", "test P@1", *SIGNALS, "llm_P@1 (lenient)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    for r, sig, sig_l, p1 in zip(measured, per_round, per_round_lenient, test_p1):
        print(f"| {r} | {100 * p1:.2f} | " + " | ".join(f"{sig[k]:.3f}" for k in SIGNALS) + f" | {sig_l['llm_P@1']:.3f} |")
    if len(measured) >= 3:
        rho = [spearmanr([s[k] for s in per_round], test_p1).statistic for k in SIGNALS]
        rho_l = spearmanr([s["llm_P@1"] for s in per_round_lenient], test_p1).statistic
        print("| Spearman with test P@1 | | " + " | ".join(f"{x:.2f}" for x in rho) + f" | {rho_l:.2f} |")
    else:
        print(f"\n(only {len(measured)} measured rounds: no rank correlation)")
    shortlist_drift(work, labels, docs)
    for variant in args.train:
        train_round_again(args.run, variant, labels, train, docs, truth, content_free, args.round)
    teacher.close()


def shortlist_drift(work: Path, labels, docs) -> None:
    """Teacher cost: would a wider first shortlist have judged later rounds' new pairs in advance (a document's
    extra labels cost only their suffix once its prefix is evaluated)? The share of each later round's new pairs
    inside the base model's top-k, and the documents that still need a new prompt."""
    from st_lmtx.models import load_model
    from st_lmtx.shortlist import Shortlist, ShortlistMiner

    rounds = sorted(int(p.name.split("-")[1]) for p in work.glob("round-*") if (p / "shortlist.npz").exists())
    if len(rounds) < 2:
        return
    shortlists = {r: Shortlist.load(work / f"round-{r:02d}" / "shortlist.npz") for r in rounds}
    n = len(docs)
    base = ShortlistMiner(load_model(str(work / "base-model")), labels, show_progress_bar=False).mine(docs.texts, k=30)
    seen = [set(shortlists[rounds[0]].for_doc(i)) for i in range(n)]
    new: dict[int, list[set[int]]] = {}
    for r in rounds[1:]:
        new[r] = [set(shortlists[r].for_doc(i)) - seen[i] for i in range(n)]
        seen = [s | set(shortlists[r].for_doc(i)) for i, s in enumerate(seen)]
    print("\nShortlist drift: each later round's new (document, label) pairs, and how many a wider round-1 shortlist "
          "(the base model's top-k) would have judged already.\n")  # fmt: skip
    print("| round | new pairs | documents with a new pair | in base top-15 | top-20 | top-30 | documents still needing a prompt (top-30) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r, rows in new.items():
        total = sum(len(x) for x in rows)
        cover = [sum(len(x & set(base.for_doc(i)[:k])) for i, x in enumerate(rows)) / max(total, 1) for k in (15, 20, 30)]
        left = sum(bool(x - set(base.for_doc(i)[:30])) for i, x in enumerate(rows))
        print(f"| {r} | {total} | {sum(bool(x) for x in rows)} | " + " | ".join(f"{c:.3f}" for c in cover) + f" | {left} |")


def top_group(d, positives, gap: float) -> list:
    """The judged labels before the largest log-odds gap, when that gap is at least ``gap`` and they are all
    "yes"; else the single top "yes"."""
    from st_lmtx.calibration import logit

    ranked = sorted(d.judged, key=lambda j: -logit(j.score))
    scores = [logit(j.score) for j in ranked]
    widest = max(range(len(ranked) - 1), key=lambda i: scores[i] - scores[i + 1], default=None)
    if widest is not None and widest > 0 and scores[widest] - scores[widest + 1] >= gap:
        group = ranked[: widest + 1]
        if all(j.verdict == "yes" for j in group):
            return group
    return [max(positives, key=lambda j: j.score)]


def content_free_of(teacher, labels) -> dict[int, float]:
    from st_lmtx.calibration import content_free_log_odds

    return dict(enumerate(content_free_log_odds(teacher, labels.texts)))


def train_round_again(run: str, variant: str, labels, train, docs, truth, content_free, r: int = 1) -> None:
    """Round ``r`` of ``run`` again from round r-1's model (the base model for round 1) on its pseudo-labels, with
    the selection ``variant`` (``keep=F``, ``calibration=NAME``, or ``seed=N``: the same selection and training
    with another seed, to see how much a round moves by chance); prints its test P@1."""
    import time

    from st_lmtx import LMTXArguments, XMCEvaluator, load_lfxmc
    from st_lmtx.calibration import calibrate
    from st_lmtx.models import load_model
    from st_lmtx.pseudo_labels import PseudoLabels, SelectionConfig, pairs_to_dataset, select_pairs
    from st_lmtx.trainer.training import round_schedule, train_round

    settings = dict(part.split("=", 1) for part in variant.split(","))  # e.g. positives=student-yes,seed=1
    keep, method = float(settings.get("keep", 1.0)), settings.get("calibration", "none")
    overrides = {"positives": settings["positives"]} if "positives" in settings else {}
    work = OUT / run / "lmtx-work"
    pseudo = calibrate(PseudoLabels.load(work / f"round-{r:02d}" / "pseudo_labels.jsonl"), method, content_free)
    out = OUT / "calibration" / f"{run}-round{r}-{variant.replace('=', '-').replace(',', '-')}"
    # The best recipe; the trainer's round r selects with seed + r and trains with seed.
    args = LMTXArguments(output_dir=str(out), seed=int(settings.get("seed", 42)), **overrides)
    config = SelectionConfig(positives=args.positives, epochs=1, seed=args.seed + r, keep_documents=keep,
                             trained_shortlist=r > 1)  # fmt: skip
    schedule = round_schedule(len(select_pairs(pseudo, len(labels), config)), args)
    config.epochs = schedule.epochs
    pairs = select_pairs(pseudo, len(labels), config)
    precision = sum(p.positive in truth[p.doc] for p in pairs) / len(pairs)
    start = work / f"round-{r - 1:02d}" / "model" if r > 1 else work / "base-model"  # as the best recipe continues
    model = load_model(str(start))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_round(model, pairs_to_dataset(pairs, docs, labels), args, out, batch_size=schedule.batch_size)
    seconds = time.perf_counter() - started
    _, test = load_lfxmc(REUTERS, "tst")
    metrics = XMCEvaluator(labels, test, train_truth=train.targets)(model)
    print(f"\nround {r} again, {variant}: {len(pairs)} pairs, schedule {schedule.to_dict()}, trained-positive precision "
          f"{precision:.3f}, test P@1 {100 * metrics['P@1']:.2f}, P@5 {100 * metrics['P@5']:.2f} ({seconds:.0f} s training)")  # fmt: skip


if __name__ == "__main__":
    main()
