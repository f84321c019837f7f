"""A teacher budget: read from its text, never passed by a run, printed in the plan, counted across resumes."""

import logging
import time

import pytest
from test_trainer import args

from st_lmtx import LMTXTrainer, RunRecord, load_lfxmc
from st_lmtx.errors import ArgumentsError
from st_lmtx.pseudo_labels import PseudoLabels
from st_lmtx.teacher.base import Answered, Judgment, Teacher
from st_lmtx.teacher.budget import TeacherBudget

TOKENS_PER_PAIR = 7
SECONDS_PER_PAIR = 0.02


class CostlyTeacher(Teacher):
    """A judge with a known cost: each pair takes TOKENS_PER_PAIR tokens and SECONDS_PER_PAIR seconds; "yes" when
    the label's first word is in the document. Like every backend, it asks the budget before each document."""

    backend = "costly"
    calls_made = 0

    @property
    def model_name(self) -> str:
        return "costly"

    def _judge_documents(self, pending, emit, run):
        for item in pending:
            self.check_budget(run, next_pairs=len(item.positions))
            for j in item.positions:
                time.sleep(SECONDS_PER_PAIR)
                run.calls += 1
                run.prompt_tokens += TOKENS_PER_PAIR
                self.calls_made += 1
                yes = item.labels[j].split()[0].lower() in item.doc.lower()
                emit(
                    [Answered(item, j, Judgment(item.labels[j], "yes" if yes else "no", float(yes)), TOKENS_PER_PAIR)]
                )


def test_a_pair_asked_twice_in_one_call_is_paid_once():
    teacher = CostlyTeacher()
    docs = ["Wheat exports rose", "Gold fell", "Wheat exports rose"]
    result = teacher.judge(docs, [["wheat", "gold"], ["gold"], ["gold", "wheat"]])
    assert teacher.calls_made == 3  # the repeated document's two pairs are not asked again
    first, _, repeat = result.judgments
    assert [(j.label, j.verdict, j.cached) for j in repeat] == [("gold", "no", True), ("wheat", "yes", True)]
    assert [(j.verdict, j.cached) for j in first] == [("yes", False), ("no", False)]
    assert (result.usage.pairs, result.usage.cache_hits, result.usage.prompt_tokens) == (5, 2, 3 * TOKENS_PER_PAIR)
    assert result.usage.cached_seconds >= 2 * SECONDS_PER_PAIR  # the repeats carry what their answers cost


@pytest.mark.parametrize(
    "text, amount, unit",
    [
        ("20000", 20000, "pairs"),
        ("20k", 20000, "pairs"),
        ("1,500 pairs", 1500, "pairs"),
        ("3M-tokens", 3_000_000, "tokens"),
        ("95000-tokens", 95000, "tokens"),
        ("2h", 7200, "seconds"),
        ("45m", 2700, "seconds"),
        ("1h30m", 5400, "seconds"),
        ("90s", 90, "seconds"),
    ],
)
def test_a_budget_reads_pairs_tokens_or_time(text, amount, unit):
    assert TeacherBudget.parse(text) == TeacherBudget(amount, unit)


@pytest.mark.parametrize("text", ["", "lots", "3M-dollars", "-5", "2 days"])
def test_an_unreadable_budget_is_a_clear_error(text):
    with pytest.raises(ArgumentsError, match="cannot read the budget"):
        TeacherBudget.parse(text)
    with pytest.raises(ArgumentsError, match="cannot read the budget"):
        LMTXTrainer("no/such/model", ["a"], args=args("out", teacher_budget=text))  # before any model loads


def run_with(toy_lfxmc, tiny_model_dir, out, budget=None, **kw):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    teacher = CostlyTeacher(cache=out / "cache.sqlite", show_progress_bar=False)
    settings = args(out, max_rounds=3, teacher_budget=budget, **kw)
    LMTXTrainer(tiny_model_dir, labels, teacher=teacher, args=settings).fit(docs)
    return RunRecord.read(out / "lmtx_run.json"), teacher


def test_a_run_never_spends_more_than_its_budget_in_pairs_tokens_or_time(tiny_model_dir, toy_lfxmc, tmp_path):
    full, teacher = run_with(toy_lfxmc, tiny_model_dir, tmp_path / "full")
    pairs = full.teacher_spent.pairs - full.teacher_spent.cache_hits
    assert full.teacher_spent.prompt_tokens == TOKENS_PER_PAIR * pairs == TOKENS_PER_PAIR * teacher.calls_made
    assert pairs > 30  # every round judged something new, with no budget

    part = 3 * pairs // 4
    for n, budget in enumerate([f"{part}", f"{TOKENS_PER_PAIR * part}-tokens", f"{part * SECONDS_PER_PAIR}s"]):
        run, teacher = run_with(toy_lfxmc, tiny_model_dir, tmp_path / f"budget-{n}", budget)
        limit = TeacherBudget.parse(budget)
        assert 0 < limit.spent(run.teacher_spent) <= limit.amount
        assert teacher.calls_made == run.teacher_spent.pairs - run.teacher_spent.cache_hits <= part
        assert run.trained_rounds  # it trained on what it could pay for


def test_a_budget_is_shared_by_the_rounds_and_settled_documents_are_not_asked_again(
    tiny_model_dir, toy_lfxmc, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="st_lmtx")
    asked = []  # (desc, candidate label lists, new pairs judged)

    class Recording(CostlyTeacher):
        def judge(self, documents, candidates, desc="Teacher", stop_at=None):
            before = self.calls_made
            result = super().judge(documents, candidates, desc, stop_at=stop_at)
            asked.append((desc, [list(c) for c in candidates], self.calls_made - before))
            return result

    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    teacher = Recording(cache=tmp_path / "cache.sqlite", show_progress_bar=False)
    budget = 60
    settings = args(tmp_path / "o", max_rounds=3, teacher_budget=str(budget), shortlist_k=None)
    assert settings.shortlist_k == 3  # a budget's default; 10 without one
    assert args(tmp_path, shortlist_k=None).shortlist_k == 10
    LMTXTrainer(tiny_model_dir, labels, teacher=teacher, args=settings).fit(docs)
    run = RunRecord.read(tmp_path / "o" / "lmtx_run.json")

    # The first dev judging takes at most 15% of the budget: 3 of the 4 dev documents, which stay the sample.
    desc, _, dev_pairs = asked[0]
    assert desc.startswith("Teacher (dev") and dev_pairs == 9 <= 0.15 * budget
    state = RunRecord.read(tmp_path / "o" / "lmtx-work" / "state.json")  # the output's record leaves the samples out
    assert len(state.dev_documents) == 3 and len(run.rounds[1].dev_values["llm_P@1"]) == 3
    # Round 1 may spend a third of what is left once a dev judging's cost is kept back.
    round_1 = next(n for d, _, n in asked if d == "Teacher (round 1)")
    assert 0 < round_1 <= (budget - dev_pairs - dev_pairs) / 3
    # After the first dev judging the run estimates the rest of the budget's time from the rate so far.
    estimate = next(m for m in caplog.messages if m.startswith("Teacher budget: "))
    assert estimate.startswith("Teacher budget: 9 pairs spent in ") and "the rest, 51 pairs, should take" in estimate
    # Before judging, the round says how many of its new pairs its share pays for.
    assert any(
        "Teacher (round 1): 15 pairs to judge (9 from the cache), the budget pays for about 14" in m
        for m in caplog.messages
    )
    assert run.rounds[1].budget_reached  # its share stopped it: later rounds reach more documents
    # Settled documents (top-1 already a "yes") are asked only what the cache knows: no new pair for them.
    assert run.rounds[2].settled_documents > 0
    known = PseudoLabels.load(tmp_path / "o" / "lmtx-work" / "round-01" / "pseudo_labels.jsonl").docs
    round_2 = next(c for d, c, _ in asked if d == "Teacher (round 2)")  # each list starts with the top-1
    settled = [i for i, c in enumerate(round_2) if labels.texts.index(c[0]) in {j.label for j in known[i].yes}]
    assert len(settled) == run.rounds[2].settled_documents > 0
    for i, candidates in enumerate(round_2):
        if i in settled:
            assert {labels.texts.index(c) for c in candidates} <= {j.label for j in known[i].judged}
        else:
            assert len(candidates) == 3
    spent = run.teacher_spent.pairs - run.teacher_spent.cache_hits
    assert spent == teacher.calls_made <= budget


def test_the_plan_is_printed_before_the_first_teacher_call(tiny_model_dir, toy_lfxmc, tmp_path, caplog):
    order = []

    class Recording(CostlyTeacher):
        def judge(self, *a, **kw):
            order.append("judge")
            return super().judge(*a, **kw)

    class Plan(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("Plan:"):
                order.append(record.getMessage())

    caplog.set_level(logging.INFO, logger="st_lmtx")
    handler = Plan()
    logging.getLogger("st_lmtx").addHandler(handler)
    try:
        labels, docs = load_lfxmc(toy_lfxmc, "trn")
        teacher = Recording(cache=tmp_path / "cache.sqlite", show_progress_bar=False)
        settings = args(tmp_path / "o", teacher_budget="60", shortlist_k=5)
        LMTXTrainer(tiny_model_dir, labels, teacher=teacher, args=settings).fit(docs)
    finally:
        logging.getLogger("st_lmtx").removeHandler(handler)
    plan = order[0]
    assert order[1] == "judge" and "Plan: 8 training documents" in plan and "at most 40 pairs" in plan
    assert "Budget: 60 pairs, 0 pairs spent; top-5 labels a document;" in plan  # the run's top-k, not the default's


def test_a_resumed_run_counts_what_it_already_spent(tiny_model_dir, toy_lfxmc, tmp_path):
    out = tmp_path / "run"
    labels, docs = load_lfxmc(toy_lfxmc, "trn")

    class Interrupted(CostlyTeacher):
        def judge(self, documents, candidates, desc="Teacher", stop_at=None):
            if desc == "Teacher (round 2)":  # half of round 2 judged, then Ctrl-C
                super().judge(documents[:4], candidates[:4], desc, stop_at=stop_at)
                raise KeyboardInterrupt
            return super().judge(documents, candidates, desc, stop_at=stop_at)

    # A fresh cache each time: what the first invocation paid is not in the second one's cache, so only the record
    # can tell the second invocation about it.
    first = Interrupted(cache=None, show_progress_bar=False)
    with pytest.raises(KeyboardInterrupt):
        LMTXTrainer(tiny_model_dir, labels, teacher=first, args=args(out, max_rounds=3, teacher_budget="70")).fit(docs)
    paid_first = first.calls_made
    second = CostlyTeacher(cache=None, show_progress_bar=False)
    LMTXTrainer(tiny_model_dir, labels, teacher=second, args=args(out, max_rounds=3, teacher_budget="70")).fit(docs)
    run = RunRecord.read(out / "lmtx_run.json")
    assert paid_first > 12  # round 0, round 1 and half of round 2 before the interruption
    assert run.teacher_spent.pairs - run.teacher_spent.cache_hits == paid_first + second.calls_made <= 70


def test_a_budget_smaller_than_one_shortlist_is_a_clear_error(tiny_model_dir, toy_lfxmc, tmp_path):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    teacher = CostlyTeacher(cache=None, show_progress_bar=False)
    with pytest.raises(
        ArgumentsError,
        match="too small: its dev share .15%. must pay for one document's top-3, so give at least 20 pairs",
    ):
        LMTXTrainer(tiny_model_dir, labels, teacher=teacher, args=args(tmp_path, teacher_budget="19")).fit(docs)
    assert teacher.calls_made == 0


def test_dev_judging_a_budget_stops_reports_the_documents_it_measured(tiny_model, toy_lfxmc, caplog):
    from st_lmtx import LLMJudgedEvaluator, OracleTeacher

    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    teacher = OracleTeacher(labels, docs, budget=TeacherBudget.parse("6"), show_progress_bar=False)
    evaluator = LLMJudgedEvaluator(labels, docs, teacher, k=3)
    with caplog.at_level(logging.INFO, logger="st_lmtx.evaluation.llm_judged_evaluator"):
        metrics = evaluator(tiny_model)
    measured = len(evaluator.last_measured)
    assert 0 < measured < len(docs) and teacher.usage.pairs <= 6
    assert f"{measured} of {len(docs)} documents measured" in caplog.text
    assert f"LLM-judged P@1 on {measured} documents: {metrics['llm_P@1']:.4f}" in caplog.text


def test_under_a_budget_the_progress_bar_counts_to_the_pairs_it_pays_for(monkeypatch):
    import st_lmtx.teacher.base as base

    totals = []

    def recording_tqdm(*args, **kwargs):
        totals.append(kwargs["total"])
        return real_tqdm(*args, **kwargs)

    real_tqdm = base.tqdm
    monkeypatch.setattr(base, "tqdm", recording_tqdm)
    teacher = CostlyTeacher(budget=TeacherBudget.parse("70-tokens"), show_progress_bar=True)
    teacher.judge(["Wheat rose", "Gold fell"], [["wheat"], ["gold"]], stop_at=70)  # the cost a pair: 7 tokens
    docs = [f"Wheat cargo {i}" for i in range(20)]
    result = teacher.judge(docs, [["wheat"]] * 20, stop_at=70)
    # 14 tokens spent, 56 left: 8 pairs, not the 20 asked (the bar's time left is that of 8)
    assert totals == [2, 8] and result.stopped and result.usage.pairs == 8
