"""The default 1.5B teacher behind llama-cpp-python's OpenAI-compatible server (``LocalTeacher``, the endpoint path)
against the same model in process (``LlamaCppTeacher``): do they give the same verdicts and p(yes), and how fast?

The pairs: Reuters-21578 training documents (the first ``--docs``), each with its top-10 labels from zero-shot
all-MiniLM-L6-v2. Each teacher judges them once from an empty cache, alone on the machine; the answers and the
seconds are committed (``benchmarks/judgments/server-agreement-*.json``) and the table is computed from them, so
``--table`` prints it again without an LLM, and ``--fresh`` judges again.

    python benchmarks/server_agreement.py --fresh      # 100 documents x 10 labels, both teachers, then the table
    python benchmarks/server_agreement.py --table
    python benchmarks/server_agreement.py --why        # why p(yes) differs: the same tokens, split differently

``--why`` takes the 10 pairs whose p(yes) differ most and 10 drawn at random (seed 0) and, for each, evaluates the
whole prompt's tokens (the same for both teachers on 980 of the 1,000 pairs) in one llama.cpp context, once with
each ``n_batch`` of 512, 64 and 7: only how the tokens are split into batches changes, and so does p(yes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REUTERS = Path(os.environ.get("LMTX_DATA", REPO.parent / "shared" / "data" / "reuters21578"))
OUT = REPO / "benchmarks" / "judgments"
TEACHERS = ("in-process", "server")


def pairs(n_docs: int) -> tuple[list[str], list[list[str]]]:
    from st_lmtx import load_lfxmc
    from st_lmtx.models import load_model
    from st_lmtx.shortlist import ShortlistMiner

    labels, docs = load_lfxmc(REUTERS, "trn")
    docs = docs.subset(range(n_docs))
    shortlist = ShortlistMiner(load_model("sentence-transformers/all-MiniLM-L6-v2"), labels).mine(docs.texts, k=10)
    return docs.texts, [[labels.texts[j] for j in shortlist.for_doc(i)] for i in range(len(docs))]


def judge(name: str, n_docs: int, fresh: bool) -> Path:
    from st_lmtx import LlamaCppTeacher, LocalTeacher

    path = OUT / f"server-agreement-{name}-{n_docs}.json"
    if path.exists() and not fresh:
        return path
    docs, candidates = pairs(n_docs)
    teacher = LlamaCppTeacher() if name == "in-process" else LocalTeacher()
    with teacher:
        started = time.perf_counter()
        result = teacher.judge(docs, candidates)
        seconds = time.perf_counter() - started
    rows = [[[j.label, j.verdict, j.score, j.graded] for j in row] for row in result.judgments]
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seconds": seconds, "requests": result.usage.calls, "judgments": rows}))
    return path


def table(n_docs: int) -> str:
    runs = {name: json.loads((OUT / f"server-agreement-{name}-{n_docs}.json").read_text()) for name in TEACHERS}
    a, b = ([pair for row in runs[n]["judgments"] for pair in row] for n in TEACHERS)
    assert [x[0] for x in a] == [x[0] for x in b]
    n = len(a)
    same = sum(x[1] == y[1] for x, y in zip(a, b))
    gaps = sorted(abs(x[2] - y[2]) for x, y in zip(a, b))
    lines = [
        f"{n:,} pairs ({n_docs} Reuters training documents x their top-10 labels), the 1.5B teacher both ways:",
        "",
        "| teacher | pairs/s | requests | graded | unparseable |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rows in zip(TEACHERS, (a, b)):
        run = runs[name]
        graded = sum(x[3] for x in rows)
        unparseable = sum(x[1] == "unparseable" for x in rows)
        lines.append(f"| {name} | {n / run['seconds']:.2f} | {run['requests']:,} | {graded:,} | {unparseable} |")
    lines += [
        "",
        f"- same verdict: {same / n:.4f} ({n - same} pairs differ)",
        f"- |p(yes) difference|: mean {statistics.fmean(gaps):.4f}, 99th percentile {gaps[int(0.99 * (n - 1))]:.4f}, "
        f"max {gaps[-1]:.4f}; within 0.02: {sum(g <= 0.02 for g in gaps) / n:.4f}",
    ]
    return "\n".join(lines)


def batch_noise(n_docs: int, batches: tuple[int, ...] = (512, 64, 7)) -> str:
    import random

    import llama_cpp
    import numpy as np

    from st_lmtx import LlamaCppTeacher
    from st_lmtx.teacher.llama_cpp_teacher import _NO, _YES

    docs, candidates = pairs(n_docs)
    runs = {n: json.loads((OUT / f"server-agreement-{n}-{n_docs}.json").read_text()) for n in TEACHERS}
    score = {n: [[x[2] for x in row] for row in runs[n]["judgments"]] for n in TEACHERS}
    teacher = LlamaCppTeacher()
    teacher._load_vocabulary(vocab_only=True)  # its rendered prompt parts and tokenizer, no weights
    head, middle, tail = teacher._parts
    yes, no = teacher._first_token_ids(_YES), teacher._first_token_ids(_NO)
    every = [(i, j) for i in range(len(docs)) for j in range(len(candidates[i]))]
    gap = {(i, j): abs(score["in-process"][i][j] - score["server"][i][j]) for i, j in every}

    def whole(i: int, j: int) -> list[int]:
        return teacher._tokens(head + teacher.prompt.truncate(docs[i]) + middle + candidates[i][j] + tail, True)

    same_tokens = 0
    for i, j in every:
        piecewise = teacher._head_tokens + teacher._tokens(teacher.prompt.truncate(docs[i]) + middle)
        same_tokens += piecewise + teacher._tokens(candidates[i][j] + tail) == whole(i, j)
    picks = sorted(every, key=gap.get, reverse=True)[:10] + random.Random(0).sample(every, 10)
    p_yes: dict[tuple[int, int], list[float]] = {}
    for n_batch in batches:
        llm = llama_cpp.Llama(
            str(teacher.model_path), n_ctx=4096, n_batch=n_batch, n_ubatch=n_batch, logits_all=True, verbose=False
        )
        for i, j in picks:
            llm.reset()
            llm.eval(whole(i, j))
            logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            odds = np.exp(logits - logits.max())
            p_yes.setdefault((i, j), []).append(float(odds[yes].sum() / (odds[yes].sum() + odds[no].sum())))
        del llm
    spread = [max(v) - min(v) for v in p_yes.values()]
    lines = [
        f"Same tokens for the whole prompt and the in-process teacher's three parts: {same_tokens} of {len(every)}.",
        "",
        "| document | label | in process | server | " + " | ".join(f"n_batch {b}" for b in batches) + " |",
        "|---:|---:|---:|---:|" + "---:|" * len(batches),
    ]
    for (i, j), values in p_yes.items():
        cells = " | ".join(f"{v:.4f}" for v in values)
        lines.append(f"| {i} | {j} | {score['in-process'][i][j]:.4f} | {score['server'][i][j]:.4f} | {cells} |")
    lines += ["", f"Spread over the batch sizes: mean {statistics.fmean(spread):.4f}, largest {max(spread):.4f}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--table", action="store_true", help="print the table from the saved answers only")
    parser.add_argument("--fresh", action="store_true", help="judge again, even where answers are saved")
    parser.add_argument("--why", action="store_true", help="evaluate the pairs that differ most at three n_batch")
    args = parser.parse_args()
    if args.why:
        print(batch_noise(args.docs))
        return
    if not args.table:
        for name in TEACHERS:
            judge(name, args.docs, args.fresh)
    print(table(args.docs))


if __name__ == "__main__":
    main()
