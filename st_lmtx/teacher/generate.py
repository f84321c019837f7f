"""The teacher data generator: a teacher's verdicts on shortlisted (document, label) pairs, as a Dataset."""

from __future__ import annotations

from datasets import Dataset, List, Value

from st_lmtx.teacher.base import Teacher

JUDGED_COLUMNS = ("verdicts", "p_yes")


def judge_shortlists(
    teacher: Teacher, shortlists: Dataset, stop_at: float | None = None, desc: str = "Teacher"
) -> Dataset:
    """The teacher's verdict and p(yes) for every shortlisted pair.

    The pairs go through ``teacher.judge``, as in `LMTXTrainer`: its cache answers the pairs it has seen (a rerun
    asks nothing again), its budget bounds the spending, and a progress bar (``desc``) counts the pairs asked.

    Args:
        teacher: any `Teacher` (`LocalTeacher`, `OpenAITeacher`, `OracleTeacher`, ...).
        shortlists: a row a document with ``document`` (its text) and ``labels`` (the label texts to judge), as
            `mine_shortlists` returns; other columns are kept.
        stop_at: a spending at which to stop asking (the teacher needs a budget); the pairs not reached get
            ``None``. Without it, a budget that runs out raises `TeacherBudgetExceeded`.
        desc: the progress bar's title.

    Returns:
        ``shortlists`` with ``verdicts`` ("yes", "no" or "unparseable", a label) and ``p_yes`` (the teacher's
        probability of "yes"; 1.0 or 0.0 for a teacher without scores), aligned with ``labels``.

    Example::

        from st_lmtx import LocalTeacher, judge_shortlists, mine_shortlists

        shortlists = mine_shortlists(model, labels, documents, k=10)
        with LocalTeacher() as teacher:
            judged = judge_shortlists(teacher, shortlists)
        judged[0]["verdicts"], judged[0]["p_yes"]
    """
    missing = [c for c in ("document", "labels") if c not in shortlists.column_names]
    if missing:
        raise ValueError(f"shortlists need the columns 'document' and 'labels' (missing: {', '.join(missing)})")
    result = teacher.judge(list(shortlists["document"]), list(shortlists["labels"]), desc=desc, stop_at=stop_at)
    verdicts = [[j.verdict if j is not None else None for j in row] for row in result.judgments]
    p_yes = [[j.score if j is not None else None for j in row] for row in result.judgments]
    judged = shortlists.remove_columns([c for c in JUDGED_COLUMNS if c in shortlists.column_names])
    judged = judged.add_column("verdicts", verdicts, feature=List(Value("string")))
    return judged.add_column("p_yes", p_yes, feature=List(Value("float64")))
