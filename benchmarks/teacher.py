"""Teacher modes on Reuters-21578: speed, tokens, cache and the quality of the answers against ground truth.

    python benchmarks/teacher.py [--docs 100] [--k 10] [--modes inprocess,pointwise,logprobs,listwise]

The first ``--docs`` training documents, each with its top-``--k`` shortlist from zero-shot
all-MiniLM-L6-v2, are judged by the default local model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M) in each mode:

- ``pointwise``: llama.cpp's server, the paper's prompt, text answer only (document first: prefix cache);
- ``logprobs``: the same with the answer token's top-5 logprobs, p(yes) as the score;
- ``listwise``: llama.cpp's server, one call per document listing the candidates;
- ``inprocess``: ``LlamaCppTeacher``, p(yes) from the yes/no logits with the document evaluated once.

Each mode is run twice on a fresh cache; the second run shows the cache hits. Ground truth measures the
answers only. Caches stay in ``.cache/bench-teacher`` (out of git).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REUTERS = Path(os.environ.get("LMTX_DATA", REPO.parent / "shared" / "data" / "reuters21578"))
CACHE = REPO / ".cache" / "bench-teacher"


def make(mode: str, cache: Path):
    from st_lmtx.teacher import LlamaCppTeacher, LocalTeacher

    common = {"cache": cache, "show_progress_bar": True}
    if mode == "inprocess":
        return LlamaCppTeacher(**common)
    if mode == "pointwise":
        return LocalTeacher(**common)
    if mode == "logprobs":
        return LocalTeacher(logprobs=True, **common)
    if mode == "listwise":
        return LocalTeacher(mode="listwise", **common)
    raise ValueError(mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--modes", default="inprocess,pointwise,logprobs,listwise")
    parser.add_argument("--keep-cache", action="store_true", help="reuse earlier answers (no fresh first run)")
    args = parser.parse_args()

    from st_lmtx import ShortlistMiner, load_lfxmc
    from st_lmtx.evaluation.teacher_quality import judge_summary
    from st_lmtx.models import load_model

    labels, train = load_lfxmc(REUTERS, "trn")
    docs = train.subset(range(args.docs))
    model = load_model("sentence-transformers/all-MiniLM-L6-v2")
    shortlist = ShortlistMiner(model, labels, show_progress_bar=False).mine(docs.texts, k=args.k)
    candidates = [[labels.texts[j] for j in shortlist.for_doc(i)] for i in range(len(docs))]
    encoder_top1 = sum(shortlist.indices[i][0] in docs.targets[i] for i in range(len(docs))) / len(docs)

    rows = []
    for mode in args.modes.split(","):
        cache = CACHE / f"{mode}-k{args.k}-n{args.docs}.sqlite"
        if not args.keep_cache:
            for path in CACHE.glob(cache.name + "*"):
                path.unlink()
        cache.parent.mkdir(parents=True, exist_ok=True)
        with make(mode, cache) as teacher:
            first = judge_summary(teacher.judge(docs.texts, candidates, desc=mode), shortlist, docs)
            second = judge_summary(teacher.judge(docs.texts, candidates, desc=f"{mode} again"), shortlist, docs)
        rows.append((mode, first, second))
        print(mode, first, f"second run: {second['calls']} calls, {second['cache_hits']} cache hits", flush=True)

    print(f"\n{args.docs} Reuters training documents x top-{args.k} MiniLM shortlist "
          f"({sum(len(c) for c in candidates)} pairs); Qwen2.5-Coder-1.5B-Instruct Q4_K_M, llama.cpp, "
          f"{os.cpu_count()} cores. Encoder's own top-1 precision: {encoder_top1:.3f}\n")  # fmt: skip
    print("| mode | s / doc | pairs / s | calls | prompt tokens / pair (server: billed; in-process: evaluated) | 2nd run: calls / cache hits | yes-rate | "
          "yes precision | yes recall (in shortlist) | top-scored label precision |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for mode, r, again in rows:
        print(f"| {mode} | {r['seconds_per_document']:.2f} | {r['pairs'] / max(r['seconds'], 1e-9):.2f} | {r['calls']} | "
              f"{r['prompt_tokens'] / r['pairs']:.1f} | {again['calls']} / {again['cache_hits']} | {r['yes_rate']:.3f} | "
              f"{r['yes_precision']:.3f} | {r['yes_recall_in_shortlist']:.3f} | {r['top_score_precision']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
