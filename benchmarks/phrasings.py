"""Does a judge err less when two phrasings of the question agree? Round 1 of ``quality.py``'s local-best run,
retrained on positives chosen from two prompt layouts' answers to the same pairs: the compact prompt (the default)
and the prefilled layout of 0.1, whose answers are at commit 2b488b3 (``git show``, no LLM).

    python benchmarks/phrasings.py                   # every rule below, then the table
    python benchmarks/phrasings.py --only compact,both-top

Rules (the positive a document trains on; the dev sample, held out of training, is judged by the compact prompt):

- ``compact``: the default, the compact prompt's top-scored "yes" (local-best's round 1, as recorded);
- ``mean``: the compact prompt's "yes" labels, ranked by the mean log-odds of both layouts;
- ``both-top``: the compact prompt's top "yes" only where it is the prefilled layout's top "yes" too; the other
  documents are not trained.

Each rule is a replay (`RoundOneReplay`, a `budget.ReplayTeacher`: the committed answers, the scores changed as the
rule says) and one round of the default recipe, 1,000 training documents as in quality.py, in
``.cache/bench-phrasings/<rule>``.
Ground truth measures the trained positives and the test split only.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import io
import json
import logging
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from budget import ReplayTeacher  # noqa: E402
from quality import BASE_MODEL, COMMON, JUDGMENTS, RECIPES, REPO, REUTERS  # noqa: E402

from st_lmtx.teacher.cache import doc_hash  # noqa: E402

OUT = REPO / ".cache" / "bench-phrasings"
PREFILLED = ("2b488b3", "benchmarks/judgments/reuters-localpf.jsonl.gz")
RULES = ("compact", "mean", "both-top")


def mean_log_odds(p: float, q: float) -> float:
    """The probability whose log-odds are the mean of ``p``'s and ``q``'s."""

    def log_odds(x: float) -> float:
        x = min(max(x, 1e-9), 1 - 1e-9)
        return math.log(x / (1 - x))

    return 1 / (1 + math.exp(-(log_odds(p) + log_odds(q)) / 2))


def prefilled_answers() -> dict[tuple[str, str], tuple[str, float]]:
    """(document hash, label) -> (verdict, p(yes)) of the prefilled layout, from the commit that last held them."""
    data = subprocess.run(["git", "show", ":".join(PREFILLED)], cwd=REPO, capture_output=True, check=True).stdout
    answers = {}
    for line in gzip.open(io.BytesIO(data), "rt"):
        row = json.loads(line)
        answers[row["doc_sha256"], row["label"]] = (row["verdict"], row["score"])
    return answers


class RoundOneReplay(ReplayTeacher):
    """A replay for runs of one round: a pair the committed answers lack is answered "no"."""

    def _judge_pack(self, pack, emit, run) -> None:
        # The retrained model's dev top-10 holds pairs nobody asked before: "no". One round is trained, so the dev
        # signal decides nothing here.
        for doc in pack:
            for j in doc.item.positions:
                key = (doc_hash(doc.item.doc), doc.item.labels[j])
                if key not in self.recorded:
                    self.recorded[key] = ("", *key, "no", 0.0, True, "no", 0, 0, 0.0)
        super()._judge_pack(pack, emit, run)


class TwoPhrasings(RoundOneReplay):
    """The compact prompt's recorded answers, with the scores (``mean``) or verdicts (``both-top``) of the pairs
    the prefilled layout answered too changed by ``rule``."""

    def __init__(self, rule: str, other: dict[tuple[str, str], tuple[str, float]], **kwargs: Any) -> None:
        super().__init__(JUDGMENTS, cache=None, **kwargs)
        by_doc = collections.defaultdict(list)
        for key in self.recorded:
            if key in other:
                by_doc[key[0]].append(key)
        for keys in by_doc.values():
            if rule == "mean":
                for key in keys:
                    row = list(self.recorded[key])
                    row[4] = mean_log_odds(row[4], other[key][1])
                    self.recorded[key] = tuple(row)
            elif rule == "both-top":
                mine = [k for k in keys if self.recorded[k][3] == "yes"]
                theirs = [k for k in keys if other[k][0] == "yes"]
                if mine and (not theirs or max(mine, key=self._score) != max(theirs, key=lambda k: other[k][1])):
                    for key in mine:  # no positive for this document
                        self.recorded[key] = (*self.recorded[key][:3], "no", *self.recorded[key][4:])

    def _score(self, key: tuple[str, str]) -> float:
        return self.recorded[key][4]


def train_round_one(out: Path, make_replay: Callable[[], RoundOneReplay], labels, train, test) -> None:
    """Round 1 of the default recipe (quality.py's 1,000 training documents) in ``out`` on the replay
    ``make_replay()`` makes; a finished run is not trained again."""
    from st_lmtx import LMTXArguments, LMTXTrainer

    if not (out / "lmtx_run.json").exists():
        args = LMTXArguments(
            output_dir=str(out), eval_k=(1, 3, 5, 10), **{**COMMON, "max_rounds": 1}, **RECIPES["best"]
        )
        with make_replay() as teacher:
            LMTXTrainer(BASE_MODEL, labels, teacher=teacher, args=args).fit(train, eval_data=test)


def round_one_options(doc: str, rules: tuple[str, ...], committed: Path) -> argparse.Namespace:
    """The command line of a one-round benchmark whose answers the LLM gives (comparative.py, descriptions.py),
    logging set up."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ask", type=int, default=0, help="ask the first N training documents (resumes)")
    parser.add_argument("--train", action="store_true", help="one round per --only rule (every document asked)")
    parser.add_argument("--only", default=",".join(rules), help=f"comma-separated subset of: {', '.join(rules)}")
    parser.add_argument("--export", action="store_true", help=f"write the answers to {committed.name} and exit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return args


def round_one_p1(out: Path) -> float | None:
    """The round-1 test P@1 of the finished run in ``out``, None before it has run."""
    from st_lmtx.trainer.records import RunRecord

    path = out / "lmtx_run.json"
    if not path.exists():
        return None
    rounds = RunRecord.read(path).trained_rounds
    return 100 * rounds[0].eval["P@1"] if rounds else None


def run(rule: str, other, labels, train, test) -> dict[str, Any]:
    from st_lmtx.trainer.records import RunRecord

    out = OUT / rule
    train_round_one(out, lambda: TwoPhrasings(rule, other), labels, train, test)
    (round1,) = RunRecord.read(out / "lmtx_run.json").trained_rounds
    return {
        "documents": round1.pseudo_labels.documents_with_yes,
        "precision": round1.precision["trained_positive_precision"],
        "p1": 100 * round1.eval["P@1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(RULES), help=f"comma-separated subset of: {', '.join(RULES)}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from st_lmtx import load_lfxmc

    labels, train = load_lfxmc(REUTERS, "trn")
    _, test = load_lfxmc(REUTERS, "tst")
    other = prefilled_answers()
    results = {rule: run(rule, other, labels, train, test) for rule in args.only.split(",")}
    print("| rule | documents with a positive | trained-positive precision | round-1 test P@1 |")
    print("|---|---:|---:|---:|")
    for rule, r in results.items():
        print(f"| {rule} | {r['documents']:,} | {r['precision']:.3f} | {r['p1']:.2f} |")


if __name__ == "__main__":
    main()
