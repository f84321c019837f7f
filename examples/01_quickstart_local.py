"""Quickstart: train a Reuters-21578 tagger with the embedded local teacher, then tag new text.

What it shows: the whole LMTX loop with no server and no API key. The in-process llama.cpp teacher
(Qwen2.5-Coder-1.5B, fetched once with `st-lmtx fetch-model`) judges the 10 shortlisted labels of 40 training
documents (their own labels are never read), all-MiniLM-L6-v2 is trained on its answers for one round, and
test P@1 / P@5 / R@10 before and after training are printed.

    st-lmtx fetch-model                                   # once: the 1.1 GB teacher model
    python examples/01_quickstart_local.py                # from the repository root
    python examples/01_quickstart_local.py --max-docs 200 --rounds 3 --output runs/quickstart-200

Time on this 2-core CPU: 15 minutes, measured while a benchmark kept both cores busy (the teacher 12 of them:
400 pairs at 1.8 s each; training 80 s). Alone, the in-process teacher judges 1.8 pairs a second here
(BENCHMARKS.md), so expect about 6 minutes. Measured result on the first 500 test documents: P@1 49.4 zero-shot
-> 80.2 after one round (P@5 18.6 -> 21.8, R@10 87.7 -> 96.1).
Re-running the same command asks the teacher nothing: answers are cached under --output, a finished run is reused.
Data: an LF-XMC folder (--data, else $LMTX_DATA, else ../shared/data/reuters21578).
"""

import argparse
import os
from pathlib import Path

from st_lmtx import LMTXArguments, LMTXTagger, LMTXTrainer, RunRecord, load_lfxmc
from st_lmtx.teacher import make_teacher


def main(argv=None):
    p = argparse.ArgumentParser(description="LMTX quickstart on Reuters-21578 with the local teacher")
    p.add_argument("--data", default=os.environ.get("LMTX_DATA", "../shared/data/reuters21578"))
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2", help="the bi-encoder to train")
    p.add_argument(
        "--teacher",
        default="local",
        help="local (in-process llama.cpp), an OpenAI-compatible URL, or oracle (ground truth: tests only)",
    )
    p.add_argument("--max-docs", type=int, default=40, help="unlabeled training documents the teacher judges")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--eval-docs", type=int, default=500, help="test documents to measure on")
    p.add_argument("--output", default="runs/quickstart")
    args = p.parse_args(argv)

    labels, train = load_lfxmc(args.data, "trn")  # 90 label texts; training documents (targets unused)
    _, test = load_lfxmc(args.data, "tst")
    test = test.subset(range(min(args.eval_docs, len(test))))

    # labels/documents are read by the oracle only; an LLM teacher sees document texts and label texts.
    cache = Path(args.output) / "lmtx-work" / "teacher_cache.sqlite"  # where fit looks for answers
    with make_teacher(args.teacher, labels=labels, documents=train, cache=cache) as teacher:
        lmtx_args = LMTXArguments(
            output_dir=args.output,
            max_docs=args.max_docs,
            max_rounds=args.rounds,
            patience=args.rounds,
            dev_size=min(20, args.max_docs),
            batch_size=16,
            warmup_steps=0.1,
            restart_from_base=False,
        )
        LMTXTrainer(args.model, labels, teacher=teacher, args=lmtx_args).fit(train, eval_data=test)

    run = RunRecord.read(Path(args.output) / "lmtx_run.json")
    print(f"\nTest metrics on {len(test)} documents (%):")
    for r in run.rounds + ([run.final] if run.final else []):
        name = "zero-shot" if r.round == 0 else f"round {r.round}"
        name = "final (average)" if r.averaged_rounds else name + (" (kept)" if r.round == run.best_round else "")
        print(f"  {name:<16}" + "  ".join(f"{k} {100 * r.eval[k]:6.2f}" for k in ("P@1", "P@5", "R@10")))

    tagger = LMTXTagger.load(args.output)  # the output folder is the tagger: no LLM from here on
    texts = ["The Fed raised interest rates again.", "Wheat exports to Egypt rose."]
    for text, tags in zip(texts, tagger.predict(texts, top_k=3)):
        print(f"{text!r}: " + ", ".join(f"{t.text} ({t.score:.2f})" for t in tags))
    return run


if __name__ == "__main__":
    main()
