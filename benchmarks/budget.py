"""What a teacher budget buys on Reuters-21578: test P@1 of the final model against the teacher's new judged
pairs (and tokens), for ways of spending the same budget.

    python benchmarks/budget.py                                  # every row below, then the table
    python benchmarks/budget.py --teachers oracle20 --budgets 10000
    python benchmarks/budget.py --table --plot                   # the table and the plot from finished runs only

Rows (teacher x way x budget), each an ``LMTXTrainer`` run of the default recipe with ``--teacher-budget`` in
pairs, 3 rounds at most, seed 42 (``--seed``: another training seed), its folder under ``.cache/bench-budget/`` (it
resumes):

- ``active``: the budget's rule (`st_lmtx.trainer.spending`), no other setting: top-3, the budget shared by the
  rounds, documents joining in order as a round's share allows, settled documents not asked again;
- ``active-1000``: the same rule on a sample of 1,000 documents;

and the fixed ways, spent as before the rule (`FixedSpending`: every round judges in order until only the dev
judging's cost is left, and the run ends after the round the budget ran out in):

- ``top10-1000``: the unbudgeted default shortlist (top-10) on a sample of 1,000 documents;
- ``top5-1000``, ``top3-1000``: fewer labels judged a document (dev judging too: the stop signal reads the top-k);
- ``top3-3000``: more documents at the same budget, fewer labels each.

Teachers: ``oracle`` and ``oracle20`` (free; quality.py's), and ``local``, the 1.5B in process with a cache and
document memory of the run's own (it pays for every answer), whose budget in the rows is in evaluated tokens
(``LOCAL_BUDGET_UNIT``). A finished ``local`` run writes its answers to ``benchmarks/judgments/budget-<row>.jsonl.gz``;
when that file is there, the row is replayed from it (`ReplayTeacher`: each answer costs the tokens it cost), with no
LLM. Ground truth measures the final model only. The table prints what each run spent (new pairs, tokens) and its
test P@1; with ``--plot``, ``docs/img/budget-frontier.png`` draws the oracles' rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any
from unittest.mock import patch

from st_lmtx.teacher.base import Answered, Judgment
from st_lmtx.teacher.cache import doc_hash
from st_lmtx.teacher.judgments import read_judgments
from st_lmtx.teacher.llama_cpp_teacher import LlamaCppTeacher
from st_lmtx.trainer.records import RoundRecord
from st_lmtx.trainer.spending import RunSpending

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import BASE_MODEL, REPO, REUTERS, local_teacher, make_teacher  # noqa: E402

OUT = REPO / ".cache" / "bench-budget"
PLOT = REPO / "docs" / "img" / "budget-frontier.png"
WAYS: dict[str, dict[str, Any]] = {
    "active": {},
    "active-1000": {"max_docs": 1000},
    "top10-1000": {"shortlist_k": 10, "max_docs": 1000},
    "top5-1000": {"shortlist_k": 5, "max_docs": 1000},
    "top3-1000": {"shortlist_k": 3, "max_docs": 1000},
    "top3-3000": {"shortlist_k": 3, "max_docs": 3000},
}
BUDGETS = (10_000, 20_000, 40_000)
TEACHERS = ("oracle20", "oracle")
COMMON: dict[str, Any] = {"max_rounds": 3, "patience": 3}
SEED = 42
LOCAL_BUDGET_UNIT = "-tokens"
JUDGMENTS = REPO / "benchmarks" / "judgments"


class ReplayTeacher(LlamaCppTeacher):
    """The 1.5B teacher of a finished ``local`` row, replayed from its answers file: each pair is answered as it was
    and the run is charged as the in-process teacher charged it (the prompt's head once, then each answer's
    evaluated tokens, the budget checked before each pack), so it spends its budget as the original did, with the
    model's vocabulary loaded and no LLM run. A pair the file does not hold is an error (the row has changed:
    delete the file to measure it again)."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _, rows = read_judgments(path)
        self.path = path
        self.recorded = {(r[1], r[2]): r for r in rows}

    def _load(self) -> None:
        if self._model is None:
            self._load_vocabulary(vocab_only=True)  # the packs and the head as the original cut them

    def _judge_pack(self, pack, emit, run) -> None:
        self.check_budget(run, next_pairs=sum(len(d.suffixes) for d in pack))
        if not self._head_ready:
            run.prompt_tokens += len(self._head_tokens)
            self._head_ready = True
        for doc in pack:
            item = doc.item
            for j in item.positions:
                row = self.recorded.get((doc_hash(item.doc), item.labels[j]))
                if row is None:
                    raise RuntimeError(f"{self.path.name} holds no answer for a pair this run asks: delete it")
                _, _, label, verdict, score, graded, answer, prompt_tokens, _, _ = row
                run.calls += 1
                run.prompt_tokens += prompt_tokens  # no completion: the teacher reads the next token's logits
                emit([Answered(item, j, Judgment(label, verdict, score, graded, answer), prompt_tokens)])


class FixedSpending(RunSpending):
    """How a budget was spent before the rule: each round judges its documents' top-k in order until what is left
    pays only for the last dev judging's cost, the dev sample is judged whole, and the run ends after the round
    the budget ran out in."""

    settles = False

    def dev_stop_at(self) -> float | None:
        return None

    def stop_at(self, rounds: list[RoundRecord]) -> tuple[float | None, str | None]:
        budget = self.budget
        if budget is None:
            return None, None
        if rounds and rounds[-1].budget_reached:
            return None, self.spent_reason()
        last_dev = rounds[-1].dev_teacher_usage if rounds else None
        stop_at = budget.amount - (budget.spent(last_dev) if last_dev is not None else 0.0)
        total = self.total()
        spent = budget.spent(total)
        judged = total.pairs - total.cache_hits
        per_pair = 1.0 if budget.unit == "pairs" else (spent / judged if judged else 0.0)
        if stop_at - spent < per_pair * self.args.shortlist_k:
            return None, self.spent_reason()
        return stop_at, None


def folder(teacher: str, way: str, budget: int, seed: int = SEED) -> Path:
    return OUT / f"{teacher}-{way}-{budget}" if seed == SEED else OUT / f"{teacher}-{way}-{budget}-seed{seed}"


def run(teacher: str, way: str, budget: int, labels, train, test, seed: int = SEED) -> None:
    from st_lmtx import LMTXArguments, LMTXTrainer, XMCEvaluator

    out = folder(teacher, way, budget, seed)
    result = out / "budget.json"
    if result.exists():
        return
    unit = LOCAL_BUDGET_UNIT if teacher == "local" else ""
    args = LMTXArguments(output_dir=str(out), teacher_budget=f"{budget}{unit}", seed=seed, **COMMON, **WAYS[way])
    spending = RunSpending if way.startswith("active") else FixedSpending
    answers = JUDGMENTS / f"budget-{out.name}.jsonl.gz"
    with (
        judge_for(teacher, out, answers, labels, train) as judge,
        patch("st_lmtx.trainer.lmtx_trainer.RunSpending", spending),
    ):
        trainer = LMTXTrainer(BASE_MODEL, labels, teacher=judge, args=args)
        model = trainer.fit(train)
        spent = trainer.spending.total()
        if teacher == "local" and not isinstance(judge, ReplayTeacher):
            judge.export_judgments(answers)
    p1 = XMCEvaluator(labels, test, k_values=(1,), name="", write_csv=False, show_progress_bar=False)(model)["P@1"]
    result.write_text(
        json.dumps(
            {
                "P@1": p1,
                "pairs": spent.pairs - spent.cache_hits,
                "tokens": spent.prompt_tokens + spent.completion_tokens,
                "teacher_s": spent.seconds,
            }
        )
    )


def judge_for(teacher: str, out: Path, answers: Path, labels, train):
    """The row's teacher: an oracle; the 1.5B replayed from the row's answers file; or the 1.5B itself, on a cache
    and a document memory of the row's own, so that it pays for every answer."""
    if teacher != "local":
        return make_teacher(teacher, labels, train)
    if answers.exists():
        return ReplayTeacher(answers, cache=None)
    return local_teacher("local", out / "teacher.sqlite", memory_dir=out / "teacher-memory")


def table(teachers, budgets, seed: int = SEED) -> list[dict[str, Any]]:
    from st_lmtx.trainer.records import RunRecord

    rows = []
    for teacher in teachers:
        for way in WAYS:
            for budget in budgets:
                path = folder(teacher, way, budget, seed)
                if not (path / "budget.json").exists():
                    continue
                measured = json.loads((path / "budget.json").read_text())
                record = RunRecord.read(path / "lmtx_run.json")
                documents = [r.pseudo_labels.documents_with_yes for r in record.trained_rounds]
                rows.append(
                    {"teacher": teacher, "way": way, "budget": budget, "rounds": len(record.trained_rounds)}
                    | measured
                    | {"trained documents": "/".join(map(str, documents))}
                )
    print(
        "| teacher | way | budget | new pairs spent | tokens spent | rounds | documents with a 'yes' per round "
        "| test P@1 |"
    )
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        unit = " tokens" if r["teacher"] == "local" else " pairs"
        print(
            f"| {r['teacher']} | {r['way']} | {r['budget']:,}{unit} | {r['pairs']:,} | {r['tokens']:,} | "
            f"{r['rounds']} | {r['trained documents']} | {100 * r['P@1']:.2f} |"
        )
    return rows


def plot(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=110)
    for teacher in dict.fromkeys(r["teacher"] for r in rows if r["teacher"] != "local"):  # the LLM's are tokens
        for way in WAYS:
            points = sorted((r["pairs"], 100 * r["P@1"]) for r in rows if r["teacher"] == teacher and r["way"] == way)
            if points:
                ax.plot(*zip(*points), marker="o", label=f"{teacher}, {way}")
    ax.set_xlabel("new pairs the teacher judged (dev included)")
    ax.set_ylabel("test P@1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.set_title("Reuters-21578: what a teacher budget buys")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT)
    print(f"\n{PLOT.relative_to(REPO)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teachers", default=",".join(TEACHERS))
    p.add_argument("--ways", default=",".join(WAYS))
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    p.add_argument("--seed", type=int, default=SEED, help="the training seed")
    p.add_argument("--table", action="store_true", help="only print the table of finished runs")
    p.add_argument("--plot", action="store_true", help=f"draw the table's rows in {PLOT.relative_to(REPO)}")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    teachers, ways = a.teachers.split(","), a.ways.split(",")
    budgets = [int(b) for b in a.budgets.split(",")]
    if not a.table:
        from st_lmtx import load_lfxmc

        labels, train = load_lfxmc(REUTERS, "trn")
        _, test = load_lfxmc(REUTERS, "tst")
        for teacher in teachers:
            for budget in budgets:
                for way in ways:
                    run(teacher, way, budget, labels, train, test, a.seed)
    rows = table(teachers, budgets, a.seed)
    if a.plot and rows:  # on request only: a run of a few rows would otherwise overwrite the committed plot
        plot(rows)


if __name__ == "__main__":
    main()
