"""Teacher throughput and answer quality on Reuters-21578: the in-process scorers, prompt layouts and server modes
(the endpoint teacher as a client: benchmarks/endpoint.py).

    python benchmarks/teacher.py                         # the two in-process rows
    python benchmarks/teacher.py --modes batched-compact,server-pointwise
    python benchmarks/teacher.py --later 3               # a later round's pairs, document memory on / off (20 minutes)
    python benchmarks/teacher.py --modes batched-reference --model qwen2.5-coder-0.5b   # another in-process model

The first ``--docs`` training documents, each with its top-``--k`` shortlist from zero-shot all-MiniLM-L6-v2
(1,000 pairs by default), are judged by the default local model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M):

- ``batched-<prompt>``: ``LlamaCppTeacher``: the part before the document once a run, the document once, all its
  labels' suffixes in one multi-sequence decode; ``<prompt>``: ``reference`` (the paper's prompt) or ``compact``
  (the question before the document);
- ``server-pointwise`` / ``server-logprobs``: llama.cpp's server (``LocalTeacher``).

``--later N`` stands in for a later curriculum round, where each document comes back with a few labels it was not
asked about: after the top-``--k`` pairs, the shortlist's next ``N`` labels per document are judged by the same
teacher with its document memory (the documents' KV cells kept from the first judging) and by a fresh teacher
with ``memory_mb=0`` (each document evaluated again).

Each mode runs twice on a fresh cache; the second run shows the cache hits. Ground truth measures the answers
only. Caches stay in ``.cache/bench-teacher`` (out of git).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REUTERS = Path(os.environ.get("LMTX_DATA", REPO.parent / "shared" / "data" / "reuters21578"))
CACHE = REPO / ".cache" / "bench-teacher"
IN_PROCESS = ["batched-reference", "batched-compact"]


def make(mode: str, cache: Path, model: str | None = None):
    from st_lmtx.teacher import LlamaCppTeacher, LocalTeacher
    from st_lmtx.teacher.model_files import find_model

    common = {"cache": cache, "show_progress_bar": True}
    if mode.startswith("batched-"):
        prompt = mode.split("-", 1)[1]
        path = None
        if model:
            path = find_model(model)
            if path is None:
                raise SystemExit(f"{model} is not fetched: st-lmtx fetch-model --model {model}")
        return LlamaCppTeacher(path, prompt=prompt, **common)
    if mode == "server-pointwise":
        return LocalTeacher(prompt="reference", **common)
    if mode == "server-logprobs":
        return LocalTeacher(prompt="reference", logprobs=True, **common)
    raise ValueError(f"unknown mode {mode!r}")


def agreement(a, b) -> tuple[float, float, float]:
    """Share of equal verdicts, mean and max |p(yes) difference| between two judgments of the same pairs."""
    pairs = [(x, y) for ra, rb in zip(a.judgments, b.judgments) for x, y in zip(ra, rb)]
    same = sum(x.verdict == y.verdict for x, y in pairs) / len(pairs)
    diffs = [abs(x.score - y.score) for x, y in pairs]
    return same, sum(diffs) / len(diffs), max(diffs)


def anatomy(docs, candidates, prompts=("reference", "compact")) -> None:
    """Tokens of each part of the rendered prompt, per layout: what is paid once a run (batched), once a
    document, and once a pair; and what the chat template adds on its own."""
    from st_lmtx.teacher import LlamaCppTeacher
    from st_lmtx.teacher.base import PendingDocument

    print(
        "\n| prompt | head (once a run) | document part, mean (once a document) | label suffix, mean (once a pair) | "
        "of which the chat template's default system prompt |"
    )
    print("|---|---:|---:|---:|---:|")
    for prompt in prompts:
        with LlamaCppTeacher(prompt=prompt, cache=None, show_progress_bar=False) as teacher:
            teacher._load()
            items = [PendingDocument(i, d, c, list(range(len(c)))) for i, (d, c) in enumerate(zip(docs, candidates))]
            cut = [teacher._cut(item) for item in items]
            head = teacher._parts[0]
            system = head[: head.find("<|im_start|>user")] if "<|im_start|>user" in head else ""
            doc_mean = sum(len(c.doc_tokens) for c in cut) / len(cut)
            suffix_mean = sum(len(s) for c in cut for s in c.suffixes) / sum(len(c.suffixes) for c in cut)
            print(
                f"| {prompt} | {len(teacher._head_tokens)} | {doc_mean:.1f} | {suffix_mean:.1f} | "
                f"{len(teacher._tokens(system)) if system else 0} |"
            )


def sample(n: int, k: int):
    """The first ``n`` Reuters training documents, their top-``k`` zero-shot MiniLM shortlist and its label texts."""
    from st_lmtx import load_lfxmc
    from st_lmtx.models import load_model
    from st_lmtx.shortlist import ShortlistMiner

    labels, train = load_lfxmc(REUTERS, "trn")
    docs = train.subset(range(n))
    model = load_model("sentence-transformers/all-MiniLM-L6-v2")
    shortlist = ShortlistMiner(model, labels, show_progress_bar=False).mine(docs.texts, k=k)
    return docs, shortlist, [[labels.texts[j] for j in shortlist.for_doc(i)] for i in range(len(docs))]


def in_process(args) -> None:
    from st_lmtx.evaluation.teacher_quality import judge_summary

    docs, shortlist, candidates = sample(args.docs, args.k)
    encoder_top1 = sum(shortlist.indices[i][0] in docs.targets[i] for i in range(len(docs))) / len(docs)

    rows, results = [], {}
    for mode in args.modes.split(","):
        cache = CACHE / f"{mode}{'-' + args.model if args.model else ''}-k{args.k}-n{args.docs}.sqlite"
        if not args.keep_cache:
            for path in CACHE.glob(cache.name + "*"):
                path.unlink()
        cache.parent.mkdir(parents=True, exist_ok=True)
        with make(mode, cache, args.model) as teacher:
            result = teacher.judge(docs.texts, candidates, desc=mode)
            first = judge_summary(result, shortlist, docs)
            second = judge_summary(teacher.judge(docs.texts, candidates, desc=f"{mode} again"), shortlist, docs)
        results[mode] = result
        rows.append((mode, first, second))
        print(mode, first, f"second run: {second['calls']} calls, {second['cache_hits']} cache hits", flush=True)

    pairs = sum(len(c) for c in candidates)
    print(
        f"\n{args.docs} Reuters training documents x top-{args.k} MiniLM shortlist ({pairs} pairs); "
        f"{args.model or 'Qwen2.5-Coder-1.5B-Instruct'} Q4_K_M, llama.cpp, {os.cpu_count()} cores. "
        "Encoder's own top-1 "
        f"precision: {encoder_top1:.3f}\n"
    )
    print(
        "| mode | s / pair | pairs / s | s / doc | evaluated prompt tokens / pair (server: billed) | 2nd run: calls / "
        "cache hits | yes-rate | yes precision | yes recall (in shortlist) | top-scored label precision |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for mode, r, again in rows:
        seconds = max(r["seconds"], 1e-9)
        print(
            f"| {mode} | {seconds / r['pairs']:.3f} | {r['pairs'] / seconds:.2f} | {r['seconds_per_document']:.2f} | "
            f"{r['prompt_tokens'] / r['pairs']:.1f} | {again['calls']} / {again['cache_hits']} | "
            f"{r['yes_rate']:.3f} | "
            f"{r['yes_precision']:.3f} | {r['yes_recall_in_shortlist']:.3f} | {r['top_score_precision']:.3f} |"
        )
    prompts = sorted({m.split("-", 1)[1] for m in args.modes.split(",") if m.startswith("batched-")})
    anatomy(docs.texts, candidates, prompts)


def later_round(args) -> None:
    from st_lmtx.teacher import LlamaCppTeacher

    docs, _, ranked = sample(args.docs, args.k + args.later)
    first, later = [r[: args.k] for r in ranked], [r[args.k :] for r in ranked]
    rows = []
    with LlamaCppTeacher(show_progress_bar=True) as teacher:  # an in-memory cache: every pair is asked
        teacher.judge(docs.texts, first, desc=f"top-{args.k}")
        on = teacher.judge(docs.texts, later, desc="later, memory on")
        rows.append(("on", on.usage, teacher._memory_used / 2**20))
    with LlamaCppTeacher(memory_mb=0, show_progress_bar=True) as teacher:
        teacher._load()  # not timed: the other row's model was loaded by its first judging
        off = teacher.judge(docs.texts, later, desc="later, memory off")
        rows.append(("off", off.usage, 0.0))
    pairs = sum(len(c) for c in later)
    print(
        f"\n{args.docs} Reuters training documents judged on their top-{args.k}, then on shortlist ranks "
        f"{args.k + 1}-{args.k + args.later} ({pairs} pairs); {os.cpu_count()} cores\n"
    )
    print(
        "| document memory | s / pair | pairs / s | s / doc | evaluated prompt tokens / pair | documents restored | "
        "memory held (MB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, usage, held in rows:
        print(
            f"| {name} | {usage.seconds / usage.pairs:.3f} | {usage.pairs / usage.seconds:.2f} | "
            f"{usage.seconds / len(docs):.2f} | {usage.prompt_tokens / usage.pairs:.1f} | {usage.restored_docs} | "
            f"{held:.0f} |"
        )
    same, mean, worst = agreement(on, off)
    print(f"\nmemory on vs off: {same:.3f} of verdicts equal, |p(yes) difference| mean {mean:.5f}, max {worst:.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--model", help="an in-process model by name (e.g. qwen2.5-coder-0.5b); default: the 1.5B")
    parser.add_argument("--modes", default=",".join(IN_PROCESS))
    parser.add_argument("--keep-cache", action="store_true", help="reuse earlier answers (no fresh first run)")
    parser.add_argument(
        "--later", type=int, default=0, help="only the later-round table, with N new labels a document"
    )
    args = parser.parse_args()
    if args.later:
        later_round(args)
    else:
        in_process(args)


if __name__ == "__main__":
    main()
