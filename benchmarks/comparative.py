"""Does a judge err less when it weighs a document's labels against each other? Round 1 of ``quality.py``'s
local-best run (the default recipe, 1,000 training documents, the 1.5B teacher), with the positive a document
trains on chosen with the help of a comparative question: the document and its whole shortlist, each label under a
letter, "which tag fits the document best? Answer with the tag's letter". The answer is read from the next
token's logits: a distribution over the ten letters, one forward pass a document. So that no label gains from its
position, each document is asked twice, in shortlist order and reversed, and the two distributions (mapped back to
the labels) are averaged; the second order reuses the first's evaluated question and document.

    python benchmarks/comparative.py                 # the table, from the committed answers and finished rounds
    python benchmarks/comparative.py --ask 1000      # ask the training documents not yet answered (LLM; resumes)
    python benchmarks/comparative.py --train         # also one round per rule (needs every training document asked)
    python benchmarks/comparative.py --train --only agree

Rules (the positive a document trains on; the compact prompt's pointwise answers, committed, decide "yes"):

- ``compact``: the default, the top-scored "yes";
- ``comparative-yes``: among the "yes" labels, the one the comparative question prefers;
- ``product``: among the "yes" labels, the highest p(yes) x p(best);
- ``agree``: the top-scored "yes" only where it is the comparative question's first choice among all ten labels;
  the other documents are not trained;
- ``agree-yes``: the same, with the first choice among the "yes" labels (a single "yes" always agrees);
- ``comparative``: the comparative question's first choice whatever the pointwise answers (every document).

The table: documents with a positive and its precision (ground truth, for measurement only) over the documents
asked; with ``--train``, each rule's round-1 test P@1 (a replay: the committed pointwise answers with the scores
and verdicts the rule sets, as phrasings.py does), in ``.cache/bench-comparative/<rule>``. The comparative answers
are kept in ``.cache/bench-comparative/answers.jsonl`` as they come and committed to
``benchmarks/judgments/reuters-local-comparative.jsonl.gz`` (``--export``), so the table re-runs with no LLM.
"""

from __future__ import annotations

import gzip
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phrasings import RoundOneReplay, round_one_options, round_one_p1, train_round_one  # noqa: E402
from quality import BASE_MODEL, COMMON, JUDGMENTS, RECIPES, REPO, REUTERS  # noqa: E402

from st_lmtx.teacher.cache import doc_hash  # noqa: E402

OUT = REPO / ".cache" / "bench-comparative"
ANSWERS = OUT / "answers.jsonl"
COMMITTED = JUDGMENTS.with_name("reuters-local-comparative.jsonl.gz")
RULES = ("compact", "comparative-yes", "product", "agree", "agree-yes", "comparative")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
QUESTION = "Which tag fits the document best? Answer with the tag's letter only."


def round1_pairs(labels, train) -> list[tuple[int, str, list[str]]]:
    """(document index, text, shortlisted label texts best first) of round 1's training documents, as the trainer
    samples and shortlists them."""
    from st_lmtx import LMTXArguments
    from st_lmtx.models import load_model
    from st_lmtx.shortlist import ShortlistMiner
    from st_lmtx.trainer.run_state import sample_documents

    docs, _ = sample_documents(len(train), LMTXArguments(output_dir=str(OUT), **COMMON, **RECIPES["best"]))
    texts = [train.texts[i] for i in docs]
    shortlist = ShortlistMiner(load_model(BASE_MODEL), labels).mine(texts, k=10)
    return [(i, t, [labels.texts[k] for k in row if k >= 0]) for i, t, row in zip(docs, texts, shortlist.indices)]


class Comparer:
    """The comparative question on the 1.5B teacher, in process (llama-cpp-python's ``Llama``)."""

    def __init__(self) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from st_lmtx.teacher.model_files import find_default_model
        from st_lmtx.teacher.prompts import PromptTemplate

        path = find_default_model()
        if path is None:
            raise SystemExit("no teacher model: run `st-lmtx fetch-model`")
        self.llm = Llama(model_path=str(path), n_ctx=2048, n_batch=512, n_threads=2, verbose=False)
        self.format = Jinja2ChatFormatter(self.llm.metadata["tokenizer.chat_template"], eos_token="", bos_token="")
        self.prompt = PromptTemplate()  # the same truncation and neutralising as the pointwise prompt
        self.letter_ids = [
            sorted({self.llm.tokenize(v.encode(), add_bos=False, special=False)[0] for v in (c, " " + c)})
            for c in LETTERS
        ]

    def _distribution(self, doc: str, labels: list[str]) -> np.ndarray:
        import llama_cpp

        tags = "\n".join(f"{LETTERS[i]}. {label}" for i, label in enumerate(labels))
        user = f'{QUESTION}\nDocument: """{self.prompt.truncate(self.prompt.view(doc))}"""\nTags:\n{tags}'
        text = self.format(messages=[{"role": "user", "content": user}]).prompt
        tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        # The reversed order shares the question and the document with the forward one: evaluate those once.
        prefix = 0
        for a, b in zip(self.llm.input_ids[: self.llm.n_tokens], tokens[:-1]):
            if a != b:
                break
            prefix += 1
        self.llm.n_tokens = prefix  # eval() drops the cache cells after it
        self.llm.eval(tokens[prefix:])
        raw = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)  # Llama keeps no logits without logits_all
        logits = np.ctypeslib.as_array(raw, shape=(self.llm.n_vocab(),)).astype(np.float64)
        logp = logits - logits.max()
        p = np.exp(logp) / np.exp(logp).sum()
        mass = np.array([p[ids].sum() for ids in self.letter_ids[: len(labels)]])
        return mass / mass.sum()

    def ask(self, doc: str, labels: list[str]) -> dict[str, Any]:
        """p(best) of each label: the mean of the shortlist order's and the reversed order's distributions."""
        forward = self._distribution(doc, labels)
        backward = self._distribution(doc, labels[::-1])[::-1]
        return {
            "doc_sha256": doc_hash(doc),
            "labels": labels,
            "forward": [round(float(x), 6) for x in forward],
            "backward": [round(float(x), 6) for x in backward],
        }


def read_answers() -> dict[tuple[str, tuple[str, ...]], dict[str, Any]]:
    answers = {}
    for path, opener in ((COMMITTED, gzip.open), (ANSWERS, open)):
        if path.exists():
            with opener(path, "rt", encoding="utf-8") as f:
                for line in f:
                    row = json.loads(line)
                    answers[row["doc_sha256"], tuple(row["labels"])] = row
    return answers


def ask(pairs, n: int) -> None:
    answers = read_answers()
    todo = [(t, ls) for _, t, ls in pairs[:n] if (doc_hash(t), tuple(ls)) not in answers]
    if not todo:
        return
    from tqdm import tqdm

    comparer = Comparer()
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(ANSWERS, "a", encoding="utf-8") as f:
        for text, labels in tqdm(todo, desc="Comparative question", unit="doc"):
            f.write(json.dumps(comparer.ask(text, labels)) + "\n")
            f.flush()
    logging.info("%d documents asked in %.0f s", len(todo), time.monotonic() - start)


def pointwise() -> dict[tuple[str, str], tuple[str, float]]:
    from st_lmtx.teacher.judgments import read_judgments

    _, rows = read_judgments(JUDGMENTS)
    return {(r[1], r[2]): (r[3], r[4]) for r in rows}


def positive(rule: str, verdicts: list[str], p_yes: list[float], best: list[float]) -> int | None:
    """The position of the label ``rule`` trains the document on, None for no positive."""
    yes = [i for i, v in enumerate(verdicts) if v == "yes"]
    first = int(np.argmax(best))
    if rule == "comparative":
        return first
    if not yes:
        return None
    top = max(yes, key=lambda i: p_yes[i])  # max keeps the first on a tie, as the trainer does
    if rule == "compact":
        return top
    if rule == "comparative-yes":
        return max(yes, key=lambda i: best[i])
    if rule == "product":
        return max(yes, key=lambda i: p_yes[i] * best[i])
    if rule == "agree":
        return top if top == first else None
    if rule == "agree-yes":
        return top if top == max(yes, key=lambda i: best[i]) else None
    raise ValueError(rule)


def precision_table(pairs, labels, train, answers, judged) -> dict[str, dict[str, Any]]:
    """Each rule's documents with a positive and the share whose positive is a true label, over the documents
    asked."""
    text_index = {t: k for k, t in enumerate(labels.texts)}
    out = {rule: {"documents": 0, "right": 0} for rule in RULES}
    asked = 0
    for i, text, ls in pairs:
        h = doc_hash(text)
        row = answers.get((h, tuple(ls)))
        if row is None:
            continue
        asked += 1
        verdicts = [judged[h, label][0] for label in ls]
        p_yes = [judged[h, label][1] for label in ls]
        best = [(a + b) / 2 for a, b in zip(row["forward"], row["backward"])]
        for rule in RULES:
            k = positive(rule, verdicts, p_yes, best)
            if k is not None:
                out[rule]["documents"] += 1
                out[rule]["right"] += text_index[ls[k]] in train.targets[i]
    for r in out.values():
        r["asked"] = asked
        r["precision"] = r["right"] / r["documents"] if r["documents"] else float("nan")
    return out


class RuleReplay(RoundOneReplay):
    """The committed pointwise answers, with each asked document's scores and verdicts set so that the default
    recipe's positive (the top-scored "yes") is the one ``rule`` picks."""

    def __init__(self, rule: str, answers, judged, **kwargs: Any) -> None:
        super().__init__(JUDGMENTS, cache=None, **kwargs)
        if rule == "compact":  # the recorded answers as they are
            return
        for (h, ls), row in answers.items():
            keys = [(h, label) for label in ls]
            if any(k not in self.recorded for k in keys):
                continue
            verdicts = [judged[k][0] for k in keys]
            p_yes = [judged[k][1] for k in keys]
            best = [(a + b) / 2 for a, b in zip(row["forward"], row["backward"])]
            k = positive(rule, verdicts, p_yes, best)
            for i, key in enumerate(keys):
                verdict = verdicts[i]
                if k is None:
                    verdict = "no"
                if rule == "comparative" and i == k:
                    verdict = "yes"
                # The chosen positive above every other "yes"; the others keep their order below it.
                score = 1.0 if i == k else min(p_yes[i], 0.999)
                self.recorded[key] = (*self.recorded[key][:3], verdict, score, *self.recorded[key][5:])


def export() -> None:
    rows = read_answers()
    with gzip.open(COMMITTED, "wt", encoding="utf-8") as f:
        for row in rows.values():
            f.write(json.dumps(row) + "\n")
    print(f"{len(rows)} comparative answers -> {COMMITTED} ({COMMITTED.stat().st_size:,} bytes)")


def main() -> None:
    args = round_one_options(__doc__, RULES, COMMITTED)
    if args.export:
        export()
        return
    from st_lmtx import load_lfxmc

    labels, train = load_lfxmc(REUTERS, "trn")
    _, test = load_lfxmc(REUTERS, "tst")
    pairs = round1_pairs(labels, train)
    judged = pointwise()
    missing = sum((doc_hash(t), label) not in judged for _, t, ls in pairs for label in ls)
    if missing:
        raise SystemExit(f"{missing} shortlisted pairs lack a committed pointwise answer: the shortlist changed")
    if args.ask:
        ask(pairs, args.ask)
    answers = read_answers()
    table = precision_table(pairs, labels, train, answers, judged)
    if args.train:
        if table["compact"]["asked"] < len(pairs):
            raise SystemExit(f"--train needs every document asked: --ask {len(pairs)}")
        for rule in args.only.split(","):
            train_round_one(OUT / rule, lambda: RuleReplay(rule, answers, judged), labels, train, test)
    print(f"documents asked: {table['compact']['asked']}")
    print("| rule | documents with a positive | trained-positive precision | round-1 test P@1 |")
    print("|---|---:|---:|---:|")
    for rule in RULES:
        r, p1 = table[rule], round_one_p1(OUT / rule)
        print(f"| {rule} | {r['documents']:,} | {r['precision']:.3f} | {'-' if p1 is None else f'{p1:.2f}'} |")


if __name__ == "__main__":
    main()
