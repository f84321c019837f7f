"""Does a judge err less when each label comes with a description? Round 1 of ``quality.py``'s local-best run (the
default recipe, 1,000 training documents, the 1.5B teacher), with the same pairs asked again by the compact prompt
with a description under each label's title.

Reuters' labels are titles only, so the descriptions are the teacher's own: the 1.5B is shown the whole tag set and
asked to define one tag (``DESCRIBE``, greedy, once a label), and its sentence is kept with the boilerplate opening
cut. This measures what a user whose labels have no descriptions could get for 90 short generations, and what a
description of the teacher's quality buys; a taxonomy's own definitions may do better (the held-out domain).

    python benchmarks/descriptions.py                # the table, from the committed answers and finished rounds
    python benchmarks/descriptions.py --ask 1000     # describe the labels, ask the first N documents (LLM; resumes)
    python benchmarks/descriptions.py --train        # also one round per rule (needs every training document asked)
    python benchmarks/descriptions.py --export       # commit the descriptions and answers

Rules (the positive a document trains on):

- ``compact``: the default, the compact prompt's top-scored "yes" (title only, its committed answers);
- ``described``: the same with the described prompt's answers;
- ``both``: "yes" only where both prompts say yes, ranked by the mean of their log-odds.

The table: the precision of the "yes" answers and of each rule's positive (ground truth, for measurement only)
over the documents asked; with ``--train``, each rule's round-1 test P@1 (a replay, as phrasings.py does), in
``.cache/bench-descriptions/<rule>``. The described answers are cached in ``.cache/bench-descriptions/teacher.sqlite``
and committed to ``benchmarks/judgments/reuters-local-described.jsonl.gz`` with the descriptions, so the table
re-runs with no LLM.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comparative import pointwise, round1_pairs  # noqa: E402
from phrasings import RoundOneReplay, mean_log_odds, round_one_options, round_one_p1, train_round_one  # noqa: E402
from quality import JUDGMENTS, REPO, REUTERS  # noqa: E402

from st_lmtx.teacher.cache import doc_hash  # noqa: E402

OUT = REPO / ".cache" / "bench-descriptions"
COMMITTED = JUDGMENTS.with_name("reuters-local-described.jsonl.gz")
DESCRIPTIONS = JUDGMENTS.with_name("reuters-local-descriptions.json")
RULES = ("compact", "described", "both")
# The whole tag set first, so that the teacher reads each tag in its collection's sense (not "Cocoa" the GUI
# framework), and evaluates that shared prefix once.
DESCRIBE = (
    "A collection of documents is tagged with these tags: {tags}.\n\n"
    'Define the tag "{title}" in one short sentence: what is a document with this tag about? '
    "Answer with the sentence only."
)
# The compact prompt with the label's title and description on two lines.
DESCRIBED_PROMPT = 'Is the tag relevant to the document? Answer yes or no.\nDocument: """{doc}"""\nTag: {label}'
_OPENING = re.compile(r'^A document (?:with the tag|tagged) ".*?" is about ', re.IGNORECASE)


def describe(titles: list[str]) -> dict[str, str]:
    """Each title's description by the 1.5B (greedy, 48 tokens at most), the committed ones reused."""
    done = json.loads(DESCRIPTIONS.read_text()) if DESCRIPTIONS.exists() else {}
    todo = [t for t in titles if t not in done]
    if todo:
        from llama_cpp import Llama

        from st_lmtx.teacher.model_files import find_default_model

        llm = Llama(model_path=str(find_default_model()), n_ctx=2048, n_threads=2, verbose=False)
        for title in todo:
            question = DESCRIBE.format(tags="; ".join(titles), title=title)
            out = llm.create_chat_completion(
                messages=[{"role": "user", "content": question}], temperature=0, max_tokens=48
            )
            text = " ".join(out["choices"][0]["message"]["content"].split())
            done[title] = _OPENING.sub("About ", text)
        DESCRIPTIONS.write_text(json.dumps(done, indent=1, ensure_ascii=False) + "\n")
    return done


def described(title: str, descriptions: dict[str, str]) -> str:
    return f'"{title}"\nMeaning: {descriptions[title]}'


def teacher():
    from st_lmtx.teacher import LlamaCppTeacher
    from st_lmtx.teacher.prompts import PromptTemplate

    OUT.mkdir(parents=True, exist_ok=True)
    t = LlamaCppTeacher(prompt=PromptTemplate(pointwise=DESCRIBED_PROMPT), cache=OUT / "teacher.sqlite", memory_mb=0)
    if COMMITTED.exists():
        t.import_judgments(COMMITTED)
    return t


def ask(pairs, descriptions: dict[str, str], n: int, chunk: int = 50) -> None:
    with teacher() as t:
        start = time.monotonic()
        for k in range(0, min(n, len(pairs)), chunk):
            part = pairs[k : min(k + chunk, n)]
            t.judge([text for _, text, _ in part], [[described(x, descriptions) for x in ls] for _, _, ls in part])
            logging.info("documents %d-%d asked (%.0f s so far)", k, k + len(part), time.monotonic() - start)


def described_answers(descriptions: dict[str, str]) -> dict[tuple[str, str], tuple[str, float]]:
    """(document hash, title) -> (verdict, p(yes)) of the described prompt: the committed answers and the cache's,
    read without the model."""
    from st_lmtx.teacher.cache import JudgmentCache
    from st_lmtx.teacher.judgments import read_judgments

    by_text = {described(t, descriptions): t for t in descriptions}
    rows = read_judgments(COMMITTED)[1] if COMMITTED.exists() else []
    if (OUT / "teacher.sqlite").exists():
        rows += JudgmentCache(OUT / "teacher.sqlite").rows()
    return {(r[1], by_text[r[2]]): (r[3], r[4]) for r in rows if r[2] in by_text}


def answers_for(rule: str, compact: tuple[str, float], other: tuple[str, float]) -> tuple[str, float]:
    """The (verdict, score) ``rule`` gives a pair from the compact and the described prompts' answers."""
    if rule == "compact":
        return compact
    if rule == "described":
        return other
    verdict = "yes" if compact[0] == other[0] == "yes" else "no"
    return verdict, mean_log_odds(compact[1], other[1])


def precision_table(pairs, labels, train, judged, other) -> dict[str, dict[str, Any]]:
    text_index = {t: k for k, t in enumerate(labels.texts)}
    out = {rule: {"yes": 0, "yes_right": 0, "documents": 0, "right": 0} for rule in RULES}
    asked = 0
    for i, text, ls in pairs:
        h = doc_hash(text)
        if any((h, x) not in other for x in ls):
            continue
        asked += 1
        truth = [text_index[x] in train.targets[i] for x in ls]
        for rule in RULES:
            answers = [answers_for(rule, judged[h, x], other[h, x]) for x in ls]
            yes = [j for j, (v, _) in enumerate(answers) if v == "yes"]
            r = out[rule]
            r["yes"] += len(yes)
            r["yes_right"] += sum(truth[j] for j in yes)
            if yes:
                r["documents"] += 1
                r["right"] += truth[max(yes, key=lambda j: answers[j][1])]
    for r in out.values():
        r["asked"] = asked
        r["yes_precision"] = r["yes_right"] / r["yes"] if r["yes"] else float("nan")
        r["precision"] = r["right"] / r["documents"] if r["documents"] else float("nan")
    return out


class DescribedReplay(RoundOneReplay):
    """The committed compact answers, each pair's verdict and score replaced by what ``rule`` gives it."""

    def __init__(self, rule: str, other, **kwargs: Any) -> None:
        super().__init__(JUDGMENTS, cache=None, **kwargs)
        for key, row in self.recorded.items():
            if key in other:
                verdict, score = answers_for(rule, (row[3], row[4]), other[key])
                self.recorded[key] = (*row[:3], verdict, score, *row[5:])


def main() -> None:
    args = round_one_options(__doc__, RULES, COMMITTED)
    if args.export:
        with teacher() as t:
            print(f"{t.export_judgments(COMMITTED)} described answers -> {COMMITTED}")
        return
    from st_lmtx import load_lfxmc

    labels, train = load_lfxmc(REUTERS, "trn")
    _, test = load_lfxmc(REUTERS, "tst")
    pairs = round1_pairs(labels, train)
    judged = pointwise()
    descriptions = describe(labels.texts) if args.ask else json.loads(DESCRIPTIONS.read_text())
    if args.ask:
        ask(pairs, descriptions, args.ask)
    other = described_answers(descriptions)
    table = precision_table(pairs, labels, train, judged, other)
    if args.train:
        if table["compact"]["asked"] < len(pairs):
            raise SystemExit(f"--train needs every document asked: --ask {len(pairs)}")
        for rule in args.only.split(","):
            train_round_one(OUT / rule, lambda: DescribedReplay(rule, other), labels, train, test)
    print(f"documents asked: {table['compact']['asked']}")
    print(
        '| rule | "yes" answers | "yes" precision | documents with a positive | trained-positive precision '
        "| round-1 test P@1 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for rule in RULES:
        r, p1 = table[rule], round_one_p1(OUT / rule)
        print(
            f"| {rule} | {r['yes']:,} | {r['yes_precision']:.3f} | {r['documents']:,} | {r['precision']:.3f} "
            f"| {'-' if p1 is None else f'{p1:.2f}'} |"
        )


if __name__ == "__main__":
    main()
