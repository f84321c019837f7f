"""A hosted OpenAI-compatible API as the teacher, with a budget and a rate limit.

What it shows: `OpenAITeacher` on a hosted API (OpenAI by default; any OpenAI-compatible provider with
--base-url), the key from $OPENAI_API_KEY (never written to the cache, logs or model card), a budget for the
whole run (`teacher_budget`: pairs, tokens or time; the run prints its plan, spends at most that, dev judging
included, and ends with the rounds it paid for; the same command with a larger budget goes on from there), and
a client-side rate limit (`rpm`, `tpm`) kept under the account's, so the API rarely answers 429 (a 429 is
retried, honouring Retry-After).

    export OPENAI_API_KEY=sk-...
    python examples/03_hosted_api.py --teacher-model gpt-4o-mini --budget 400k-tokens --rpm 500 --tpm 200000

Time: not measured against a hosted API (this machine has no access to one). The default run (100 documents,
50 of them the dev sample) makes about 1,050 requests of about 230 prompt tokens (about 250,000 tokens); at
--rpm 500 that is at least 2 minutes of teacher time, plus about 3 minutes of training and evaluation on 2 CPU
cores (estimated from 01). tests/test_examples.py runs this script against a loopback server in seconds.
"""

import argparse
import os
from pathlib import Path

from st_lmtx import LMTXArguments, LMTXTrainer, OpenAITeacher, RunRecord, load_lfxmc


def main(argv=None):
    p = argparse.ArgumentParser(description="LMTX with a hosted API as the teacher, within a budget")
    p.add_argument("--base-url", default="https://api.openai.com/v1")
    p.add_argument("--teacher-model", default="gpt-4o-mini")
    p.add_argument(
        "--budget", default="400k-tokens", help="what the teacher may spend: 1500 (pairs), 400k-tokens, 30m"
    )
    p.add_argument("--rpm", type=int, default=500, help="rate limit: requests a minute")
    p.add_argument("--tpm", type=int, default=200_000, help="rate limit: tokens a minute")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument("--data", default=os.environ.get("LMTX_DATA", "../shared/data/reuters21578"))
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--max-docs", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--eval-docs", type=int, default=500)
    p.add_argument("--output", default="runs/hosted-api")
    args = p.parse_args(argv)

    labels, train = load_lfxmc(args.data, "trn")
    _, test = load_lfxmc(args.data, "tst")
    test = test.subset(range(min(args.eval_docs, len(test))))

    teacher = OpenAITeacher(
        args.teacher_model,
        base_url=args.base_url,  # api_key=... or $OPENAI_API_KEY
        logprobs=True,  # p(yes) scores: top-yes positives train on the label the LLM is surest of
        rpm=args.rpm,
        tpm=args.tpm,
        concurrency=args.concurrency,  # the rate limit
        cache=Path(args.output) / "lmtx-work" / "teacher_cache.sqlite",
    )
    lmtx_args = LMTXArguments(
        output_dir=args.output,
        teacher_budget=args.budget,
        max_docs=args.max_docs,
        max_rounds=args.rounds,
        patience=args.rounds,
        dev_size=min(50, args.max_docs),
        batch_size=32,
        warmup_steps=0.1,
        restart_from_base=False,
    )
    try:
        with teacher:
            trainer = LMTXTrainer(args.model, labels, teacher=teacher, args=lmtx_args)
            trainer.fit(train, eval_data=test)
    finally:
        u = teacher.usage
        print(
            f"Teacher this run: {u.calls} calls, {u.prompt_tokens:,} prompt + {u.completion_tokens:,} answer tokens, "
            f"{u.retries} retries, {u.seconds:.0f} s"
        )

    run = RunRecord.read(Path(args.output) / "lmtx_run.json")
    print(
        f"{run.stop_reason}. Test P@1: zero-shot {100 * run.rounds[0].eval['P@1']:.2f}, "
        f"final model {100 * run.final_record.eval['P@1']:.2f}\n{trainer.spending.summary()}"
    )
    return {"usage": teacher.usage.to_dict(), "run": run}


if __name__ == "__main__":
    main()
