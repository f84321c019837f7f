"""A vLLM or llama.cpp server as the teacher: LMTX on Reuters-21578 with the LLM behind an OpenAI-compatible URL.

What it shows: `make_teacher(URL)` (an OpenAITeacher; the model name is taken from the server's GET /models
when it serves one model), requests in flight sized to the server (--concurrency auto, or a number), graded
p(yes) scores from logprobs (--no-logprobs for yes/no only), and the server's usage (calls, tokens, seconds) after
the run. On vLLM and llama.cpp's server many pairs go in one request; llama-cpp-python's server takes a pair a
request.

Start one server, then point --base-url at it:

    # llama-cpp-python's server (installed by st-lmtx[local]; the model `st-lmtx fetch-model` fetched). It answers
    # one request at a time, so --concurrency 1; on a CPU keep the run small (--max-docs 10: 100 pairs). Its logprobs
    # need --logits_all True.
    python -m llama_cpp.server --model ~/.cache/st-lmtx/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
        --host 127.0.0.1 --port 8080 --n_ctx 4096 --logits_all True
    python examples/02_server_teacher.py --base-url http://127.0.0.1:8080/v1 --concurrency 1 --max-docs 10

    # llama.cpp's own server (a llama.cpp build), 4 slots of 4,096 tokens each:
    llama-server -m ~/.cache/st-lmtx/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --port 8080 --parallel 4 -c 16384
    python examples/02_server_teacher.py --base-url http://127.0.0.1:8080/v1

    # vLLM on a GPU (prefix caching is on by default in recent vLLM):
    vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000
    python examples/02_server_teacher.py --base-url http://127.0.0.1:8000/v1 --max-docs 1000 --rounds 3

Time on this 2-core CPU: the llama-cpp-python pair above took 15 minutes, measured while a benchmark kept both
cores busy: the server judged the 100 pairs in 13 minutes (7.9 s a pair, where the in-process teacher of 01 took
1.8 s at the same time), training and evaluation took 2; test P@1 49.4 -> 69.0 on 500 documents. Alone it is
faster (not measured). The default --max-docs 40 asks about 400 pairs. llama-server and vLLM were not run here
(no llama.cpp build, no GPU).
"""

import argparse
import os
from pathlib import Path

from st_lmtx import LMTXArguments, LMTXTrainer, RunRecord, load_lfxmc
from st_lmtx.arguments import in_flight
from st_lmtx.teacher import make_teacher


def main(argv=None):
    p = argparse.ArgumentParser(description="LMTX with a vLLM / llama.cpp server as the teacher")
    p.add_argument("--base-url", default="http://127.0.0.1:8080/v1", help="comma-separate several servers")
    p.add_argument("--teacher-model", default=None, help="default: the one model the server lists")
    p.add_argument("--concurrency", default="auto", help="requests in flight per server: auto or a number")
    p.add_argument(
        "--logprobs", action=argparse.BooleanOptionalAction, default=True, help="score p(yes) from the logprobs"
    )
    p.add_argument("--data", default=os.environ.get("LMTX_DATA", "../shared/data/reuters21578"))
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--max-docs", type=int, default=40)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--eval-docs", type=int, default=500)
    p.add_argument("--output", default="runs/server-teacher")
    args = p.parse_args(argv)

    labels, train = load_lfxmc(args.data, "trn")
    _, test = load_lfxmc(args.data, "tst")
    test = test.subset(range(min(args.eval_docs, len(test))))

    cache = Path(args.output) / "lmtx-work" / "teacher_cache.sqlite"
    with make_teacher(
        args.base_url,
        model=args.teacher_model,
        cache=cache,
        concurrency=in_flight(args.concurrency),
        logprobs=args.logprobs,
    ) as teacher:
        print(f"Teacher: {teacher.model_name} at {args.base_url}")
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
        usage = teacher.usage  # this process's calls; answers already in the cache cost nothing

    print(
        f"Teacher: {usage.calls} calls, {usage.prompt_tokens + usage.completion_tokens:,} tokens, "
        f"{usage.seconds:.0f} s, {usage.cache_hits} answers from the cache, {usage.retries} retries"
    )
    run = RunRecord.read(Path(args.output) / "lmtx_run.json")
    print(
        f"Test P@1 on {len(test)} documents: zero-shot {100 * run.rounds[0].eval['P@1']:.2f}, "
        f"final model {100 * run.final_record.eval['P@1']:.2f}; the tagger is in {args.output}"
    )
    return run


if __name__ == "__main__":
    main()
