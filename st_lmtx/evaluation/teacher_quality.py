"""How good the teacher's answers are: usage, and, where ground truth exists, precision and recall of "yes"."""

from __future__ import annotations

from typing import Any

from st_lmtx.inputs import DocumentSet
from st_lmtx.shortlist import Shortlist
from st_lmtx.teacher.base import JudgeResult


def judge_summary(result: JudgeResult, shortlist: Shortlist, docs: DocumentSet) -> dict[str, Any]:
    """Pairs, yes-rate and usage; with ground truth (evaluation only) the precision of "yes", its recall of the
    true labels that made the shortlist, and the precision of each document's top-scored label (ties go to
    the better shortlist rank, so an ungraded teacher's top label is its first "yes")."""
    u = result.usage
    pairs = sum(len(row) for row in result.judgments)
    yes = sum(j.verdict == "yes" for row in result.judgments for j in row)
    summary: dict[str, Any] = {
        "documents": len(result.judgments),
        "pairs": pairs,
        "yes_rate": round(yes / max(pairs, 1), 4),
        "unparseable": sum(j.verdict == "unparseable" for row in result.judgments for j in row),
        "calls": u.calls,
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "seconds": round(u.seconds, 1),
        "seconds_per_document": round(u.seconds / max(len(result.judgments), 1), 2),
        "cache_hits": u.cache_hits,
        "retries": u.retries,
        "instruction_like_documents": u.instruction_like_docs,
        "all_yes_documents": u.all_yes_docs,
    }
    if docs.targets is not None:
        true_yes = in_shortlist = top_right = 0
        for i, row in enumerate(result.judgments):
            truth = set(docs.targets[i])
            ids = shortlist.for_doc(i)
            true_yes += sum(j.verdict == "yes" and label in truth for label, j in zip(ids, row))
            in_shortlist += len(truth & set(ids))
            if row:
                best = max(range(len(row)), key=lambda n: (row[n].score, -n))
                top_right += ids[best] in truth
        summary["yes_precision"] = round(true_yes / max(yes, 1), 4)
        summary["yes_recall_in_shortlist"] = round(true_yes / max(in_shortlist, 1), 4)
        summary["top_score_precision"] = round(top_right / max(len(result.judgments), 1), 4)
    return summary
