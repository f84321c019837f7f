"""Which model should a run end with? For judges from perfect to lenient, on `benchmarks/quality.py`'s runs: the
best round (known only from the test split), the last round, the round the stop rule keeps, the uniform average of
the rounds (0.2's final model) and the trainer's rule (`RunState.rounds_to_average`: the kept round averaged with
the rounds the dev sample cannot tell apart from it, within two standard errors), with the dev sample drawn from
the training documents (in-sample, 0.2) or held out of training (``held_out_dev``, the default after 0.2).

    python benchmarks/quality.py --only oracle-best,oracle20-best,oracle40yes-best,local-best
    python benchmarks/final_model.py                 # the table, from those runs' folders

It trains nothing: every round's model is on disk. It asks each run's judge about both dev samples under every
round's model and under each average a rule picks (free for the oracles; the 1.5B teacher's answers are cached
and committed), measures those averages on the test split, and applies the stop rule (patience 1) to each dev
sample's signal as the trainer would. Results are kept in ``measured.json`` beside each run.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import OUT, REUTERS, make_teacher  # noqa: E402

RUNS = ("oracle-best", "oracle20-best", "oracle40yes-best", "local-best")
SOURCES = {"in-sample": False, "held-out": True}  # dev sample -> held_out_dev
COLUMNS = (
    "best round (hindsight)",
    "last round",
    "average of the rounds (0.2)",
    "kept round, held-out dev",
    "rule, in-sample dev",
    "rule, held-out dev (default)",
)


class Measured:
    """Test P@1 and the per-document dev signals (both dev samples) of a run's round models and their averages,
    measured once and kept in ``measured.json`` beside the run."""

    def __init__(self, folder: Path, labels, train, test, teacher) -> None:
        from st_lmtx import LMTXArguments, XMCEvaluator
        from st_lmtx.evaluation.llm_judged_evaluator import LLMJudgedEvaluator
        from st_lmtx.trainer.records import RunRecord
        from st_lmtx.trainer.run_state import sample_documents

        self.folder = folder
        self.record = RunRecord.read(folder / "lmtx-work" / "state.json")
        self.path = folder / "measured.json"
        self.saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.xmc = XMCEvaluator(labels, test, k_values=(1,), name="", write_csv=False, show_progress_bar=False)
        a = {k: self.record.args[k] for k in ("max_docs", "dev_size", "seed")}
        self.dev = {}
        k = self.record.args["shortlist_k"]
        for source, held_out in SOURCES.items():
            train_indices, dev = sample_documents(len(train), LMTXArguments(**a, held_out_dev=held_out))
            if train_indices != self.record.train_indices:
                raise SystemExit(f"{folder}: the held-out dev sample would change its training sample")
            self.dev[source] = LLMJudgedEvaluator(labels, train.subset(dev), teacher, k=k)

    def __call__(self, rounds: list[int]) -> dict[str, Any]:
        """Test P@1 and each dev sample's signals per document for the average of ``rounds`` (one round: its
        model)."""
        name = ",".join(map(str, rounds))
        if name not in self.saved:
            from sentence_transformers import SentenceTransformer

            from st_lmtx.trainer.averaging import average_models

            work = self.folder / "lmtx-work"
            model = average_models([SentenceTransformer(str(work / f"round-{r:02d}" / "model")) for r in rounds])
            final = self.record.final
            recorded = self.record.rounds[rounds[0]] if len(rounds) == 1 else None
            recorded = final if final is not None and final.averaged_rounds == rounds else recorded
            result: dict[str, Any] = {"P@1": recorded.eval["P@1"] if recorded else self.xmc(model)["P@1"]}
            for source, evaluator in self.dev.items():
                evaluator(model)
                result[source] = evaluator.last_documents
            self.saved[name] = result
            self.path.write_text(json.dumps(self.saved))
        return self.saved[name]


def simulate(measured: Measured, source: str) -> tuple[list[int], int, list[int]]:
    """The rounds a run with patience 1 trains when its stop rule reads ``source``'s dev sample, the round it
    keeps, and the rounds `RunState.rounds_to_average` averages."""
    from st_lmtx.trainer.run_state import RunState

    record = measured.record
    metric = record.stop_metric
    start = replace(record, rounds=[record.rounds[0]], best_round=None, finished=False, final=None)
    state = RunState(measured.folder / "unused-state.json", start)  # never saved
    for r in record.trained_rounds:
        values = measured([r.round])[source][metric]
        state.add_round(replace(r, dev={metric: statistics.fmean(values)}, dev_values={metric: values}), patience=1)
        if state.record.finished:
            break
    return [r.round for r in state.record.trained_rounds], state.record.best_round, state.rounds_to_average()


def row(measured: Measured) -> dict[str, list[int]]:
    """The rounds behind each column."""
    trained, _, in_sample_rule = simulate(measured, "in-sample")  # trained: how 0.2 stopped
    held_trained, kept, held_rule = simulate(measured, "held-out")
    p1 = {r.round: r.eval["P@1"] for r in measured.record.trained_rounds}
    return dict(
        zip(
            COLUMNS,
            (
                [max(held_trained, key=lambda r: p1[r])],
                [held_trained[-1]],
                trained,
                [kept],
                in_sample_rule,
                held_rule,
            ),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(RUNS), help=f"comma-separated subset of: {', '.join(RUNS)}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from st_lmtx import load_lfxmc

    labels, train = load_lfxmc(REUTERS, "trn")
    _, test = load_lfxmc(REUTERS, "tst")
    print(
        "\nReuters-21578 test P@1 (%) of each run's final model under each rule: the quality.py runs (1,000 "
        "training documents, up to 3 rounds, dev samples of 300). Each cell: test P@1 (the rounds it averages).\n"
    )
    print("| run | test P@1 per round (0 = zero-shot) | " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * (len(COLUMNS) + 2))
    for name in args.only.split(","):
        folder = OUT / name
        if not (folder / "lmtx-work" / "state.json").exists():
            print(f"| {name} | (no run: python benchmarks/quality.py --only {name}) |")
            continue
        with make_teacher(name.split("-")[0], labels, train) as teacher:
            measured = Measured(folder, labels, train, test, teacher)
            cells = [f"{100 * measured(rs)['P@1']:.2f} ({','.join(map(str, rs))})" for rs in row(measured).values()]
        per_round = "/".join(f"{100 * r.eval['P@1']:.1f}" for r in measured.record.rounds)
        print(f"| {name} | {per_round} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
