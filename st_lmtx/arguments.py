"""The settings of an LMTX run (`LMTXArguments`) and of its teacher (`TeacherArguments`).

Each setting is defined once, here, with its help text, its choices and its group; the ``st-lmtx`` command's
flags are generated from these fields (same name in kebab-case, same default). A field marked ``recipe`` is
filled by the named recipe when left at ``None``; a field marked ``run`` defines the run: resuming an output
folder needs the same value. This module imports nothing heavy, so that the command line can print its help
without loading torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from st_lmtx.errors import ArgumentsError

# The named presets of the settings marked ``recipe``; any of them given explicitly wins over the recipe.
RECIPES: dict[str, dict[str, Any]] = {
    # The best recipe measured (BENCHMARKS.md): the teacher's most confident "yes" as the only positive,
    # judgments kept across rounds, each round continuing from the last, softmax weighting of the violating
    # negatives, warmup as a share of the round, at least 8 steps a round, stop on the teacher's preference for
    # the model's top-1 over its top-k (a lenient judge does not blind it) on documents no round trains on, and
    # the average of the rounds that sample cannot tell apart from the best one as the final model.
    "best": {
        "positives": "top-yes",
        "accumulate_judgments": True,
        "restart_from_base": False,
        "softmax_weighting": True,
        "learning_rate": 2e-4,
        "warmup_steps": 0.1,
        "batch_size": 128,
        "min_steps_per_round": 8,
        "dev_size": 300,
        "held_out_dev": True,
        "patience": 1,
        "max_rounds": 6,
        "stop_metric": "llm_top1_margin",
        "average_rounds": True,
    },
    # The reference code (xmc-aalto/LMTX): a random "yes" per use, every round from the base model, the mean over
    # the hardest in-batch negatives, 100 warmup steps, no scaling of a round to its size, stop on LLM-judged
    # P@1 and keep that round.
    "reference": {
        "positives": "random-yes",
        "accumulate_judgments": False,
        "restart_from_base": True,
        "softmax_weighting": False,
        "learning_rate": 2e-4,
        "warmup_steps": 100,
        "batch_size": 128,
        "min_steps_per_round": 0,
        "dev_size": 800,
        "held_out_dev": False,
        "patience": 1,
        "max_rounds": 6,
        "stop_metric": "llm_P@1",
        "average_rounds": False,
    },
}
DEFAULT_RECIPE = "best"
# Labels judged per document: the paper's 10; under a budget 3, which buy as good a model for a third of the pairs
# (BENCHMARKS.md, "A teacher budget").
DEFAULT_SHORTLIST_K = 10
BUDGET_SHORTLIST_K = 3

GROUPS = ("data", "model", "teacher", "training", "stopping", "output")


def setting(
    default: Any = None,
    help: str = "",
    *,
    group: str,
    choices: tuple[Any, ...] | None = None,
    recipe: bool = False,
    run: bool = False,
    cli: bool = True,
    minimum: float | None = None,
    metavar: str | None = None,
    default_factory: Any = MISSING,
    parse: Any = None,
) -> Any:
    """A dataclass field with what the command line and the checks need: its help text, its group, its choices,
    whether a recipe fills it (``recipe``), whether it defines the run (``run``), whether it is a flag (``cli``;
    Python-only otherwise), its smallest allowed value (``minimum``) and the function that reads and checks its
    value (``parse``: the flag's type, and applied in Python too)."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}")
    metadata = {
        "help": help,
        "group": group,
        "choices": choices,
        "recipe": recipe,
        "run": run,
        "cli": cli,
        "minimum": minimum,
        "metavar": metavar,
        "parse": parse,
    }
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def validate(instance: Any) -> None:
    """Check every field of a settings dataclass against its choices and minimum, and read the fields that have a
    ``parse``: one place for every check."""
    for f in fields(instance):
        value, meta = getattr(instance, f.name), f.metadata
        if value is None:
            continue
        if meta.get("parse"):
            value = meta["parse"](value)
            setattr(instance, f.name, value)
        if meta.get("choices") and value not in meta["choices"]:
            raise ArgumentsError(f"{f.name} must be one of {', '.join(map(str, meta['choices']))}; got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ArgumentsError(f"{f.name} must be a finite number; got {value!r}")
        minimum = meta.get("minimum")
        if minimum is not None and value < minimum:
            raise ArgumentsError(f"{f.name} must be >= {minimum}; got {value!r}")


def in_flight(value: str | int | None) -> str | int | None:
    """A concurrency setting: ``"auto"``, a positive integer (given as text on the command line) or None."""
    if value is None or value == "auto":
        return value
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or isinstance(value, float | bool):
        raise ArgumentsError(f"concurrency must be 'auto' or an integer >= 1; got {value!r}")
    return number


def settings_table(cls: type, group: str | None = None, cli: bool = True) -> str:
    """The Markdown table of a settings dataclass's fields (those of ``group`` when given; flags, or the
    Python-only fields when ``cli`` is false), from their definitions: the docs' option tables are generated by
    this (``scripts/mkdocs_hooks.py``), so a setting's help text is written once."""
    rows = []
    for f in fields(cls):
        meta = f.metadata
        if meta["cli"] != cli or (group is not None and meta["group"] != group):
            continue
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if meta["recipe"]:
            shown = "*recipe*"
        elif default is None or default in ([], {}):
            shown = "-"
        elif isinstance(default, bool):
            shown = "on" if default else "off"
        elif isinstance(default, (int, float)):
            shown = f"{default:,}"
        else:
            shown = f"`{default}`"
        meaning = meta["help"].removeprefix("(recipe) ") + ("; *run*" if meta["run"] else "")
        name = f.name.replace("_", "-")
        if not cli:
            rows.append(f"| `{f.name}` | {shown} | {meaning} |")
            continue
        if default is None and str(cls.__annotations__[f.name]).startswith("bool"):
            flag = f"`--[no-]{name}`"  # a boolean its recipe fills: a pair of flags
        else:
            flag = f"`--{name}" + (f" {meta['metavar']}`" if meta["metavar"] else "`")
        rows.append(f"| {flag} | {shown} | {meaning} |")
    head = "| flag | default | meaning |\n|---|---|---|" if cli else "| field | default | meaning |\n|---|---|---|"
    return "\n".join([head, *rows])


@dataclass
class LMTXArguments:
    """Everything that configures an LMTX run.

    ``recipe`` names a preset (`RECIPES`) that fills every setting marked *recipe* left at ``None``:
    ``"best"`` (the default, the best recipe measured) or ``"reference"`` (the paper's code). Settings given
    explicitly win over the recipe::

        LMTXArguments(output_dir="my-tagger")                       # the best recipe
        LMTXArguments(output_dir="my-tagger", recipe="reference")   # the reference code's settings
        LMTXArguments(recipe="reference", positives="top-yes")

    Every field is documented by its ``help`` (``st-lmtx train --help`` prints the same text).
    """

    # output
    output_dir: str = setting(
        "lmtx-output", "the run's folder: its root becomes the final model", group="output", metavar="DIR"
    )
    # training
    recipe: str = setting(
        DEFAULT_RECIPE, "the preset that fills the settings marked (recipe)", group="training", choices=tuple(RECIPES)
    )
    teacher_budget: str | None = setting(
        None,
        "the most the teacher may spend in the whole run, dev judging included: new judged pairs (20000, 20k), "
        "evaluated tokens (3M-tokens) or judging time (2h, 45m). The run prints its plan first and ends with the "
        "rounds it could pay for; a rerun with a larger budget goes on",
        group="teacher",
        metavar="BUDGET",
    )
    max_docs: int | None = setting(
        None,
        "train on a random sample of at most this many documents (default: all; the paper: 30,000)",
        group="data",
        run=True,
        minimum=1,
    )
    shortlist_k: int | None = setting(
        None,
        "labels shortlisted per document and judged by the teacher (default: 10, the paper's; 3 with a "
        "teacher budget, whose first labels hold most of the teacher's right answers)",
        group="training",
        run=True,
        minimum=1,
    )
    positives: str | None = setting(
        None,
        "(recipe) the positive a document trains on: the teacher's highest-scored 'yes' (top-yes), or a "
        "random 'yes' each time the document is used (random-yes, the reference)",
        group="training",
        choices=("top-yes", "random-yes"),
        recipe=True,
        run=True,
    )
    accumulate_judgments: bool | None = setting(
        None,
        "(recipe) choose positives among every label judged for a document so far, not only among the "
        "round's shortlist",
        group="training",
        recipe=True,
        run=True,
    )
    restart_from_base: bool | None = setting(
        None,
        "(recipe) train every round from the base model (the reference) instead of the last round's model",
        group="training",
        recipe=True,
        run=True,
    )
    softmax_weighting: bool | None = setting(
        None,
        "(recipe) weight the violating negatives by softmax instead of averaging them (LMTXTripletLoss)",
        group="training",
        recipe=True,
        run=True,
    )
    learning_rate: float | None = setting(
        None, "(recipe) AdamW's peak learning rate, linear decay", group="training", recipe=True, run=True, minimum=0
    )
    warmup_steps: float | None = setting(
        None,
        "(recipe) warmup steps, or below 1 a share of the round's steps (never the whole round)",
        group="training",
        recipe=True,
        run=True,
        minimum=0,
    )
    batch_size: int | None = setting(
        None,
        "(recipe) the largest global batch (in-batch negatives come from it)",
        group="training",
        recipe=True,
        run=True,
        minimum=1,
    )
    min_steps_per_round: int | None = setting(
        None,
        "(recipe) a round trains at least this many steps however few documents it has: the batch shrinks "
        "(not below num_negatives + 1, nor 32), then the round takes more passes; 0: batch_size, one pass",
        group="training",
        recipe=True,
        run=True,
        minimum=0,
        cli=False,
    )
    margin: float = setting(0.3, "LMTXTripletLoss's margin", group="training", run=True, minimum=0, cli=False)
    num_negatives: int = setting(
        10,
        "LMTXTripletLoss's hardest in-batch negatives per document",
        group="training",
        run=True,
        minimum=1,
        cli=False,
    )
    seed: int = setting(42, "seeds the samples, the positive draws and training", group="training", run=True)
    # stopping
    max_rounds: int | None = setting(
        None, "(recipe) curriculum rounds at most", group="stopping", recipe=True, minimum=1
    )
    dev_size: int | None = setting(
        None,
        "(recipe) documents on which the teacher judges each round's top-k (the stop rule)",
        group="stopping",
        recipe=True,
        run=True,
        minimum=0,
    )
    held_out_dev: bool | None = setting(
        None,
        "(recipe) draw the dev sample from documents no round trains on (beyond max_docs, else taken out of "
        "training, at most a fifth of them), so that it ranks the rounds as unseen documents would; else from "
        "the training documents (the reference), whose judgments the next round reuses",
        group="stopping",
        recipe=True,
        run=True,
    )
    patience: int | None = setting(
        None, "(recipe) rounds without a better stop metric before stopping", group="stopping", recipe=True, minimum=1
    )
    stop_metric: str | None = setting(
        None,
        "(recipe) the dev signal that ranks the rounds: how far the teacher prefers the top-1 to the rest "
        "of the top-k (llm_top1_margin), or the share of top-1s it calls relevant (llm_P@1, the reference)",
        group="stopping",
        choices=("llm_top1_margin", "llm_P@1"),
        recipe=True,
    )
    average_rounds: bool | None = setting(
        None,
        "(recipe) the final model averages the weights of the kept round and of the rounds the dev sample cannot "
        "tell apart from it (within two standard errors); else it is the kept round",
        group="stopping",
        recipe=True,
    )
    # model
    max_seq_length: int | None = setting(
        None, "truncate documents to this many tokens (default: the model's)", group="model", run=True, minimum=1
    )
    # Python only: how the run is measured, indexed and shown, and the trainer's other arguments.
    eval_k: tuple[int, ...] = setting((1, 3, 5, 10), "cut-offs of the evaluation metrics", group="output", cli=False)
    encode_batch_size: int = setting(
        64, "batch size when encoding for shortlists and evaluation", group="model", minimum=1, cli=False
    )
    hnsw_threshold: int = setting(
        100_000, "label count from which the label index is HNSW instead of exact", group="model", minimum=1, cli=False
    )
    hnsw_ef_search: int = setting(
        512, "HNSW's efSearch: higher is slower and closer to exact search", group="model", minimum=1, cli=False
    )
    show_progress_bar: bool = setting(
        True, "progress bars for encoding, judging and training (the CLI's -q)", group="output", cli=False
    )

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ArgumentsError(f"recipe must be one of {', '.join(RECIPES)}; got {self.recipe!r}")
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.shortlist_k is None:
            self.shortlist_k = BUDGET_SHORTLIST_K if self.teacher_budget is not None else DEFAULT_SHORTLIST_K
        self.eval_k = tuple(self.eval_k)
        self.output_dir = os.path.expanduser(self.output_dir)  # as transformers' TrainingArguments does
        validate(self)
        if self.teacher_budget is not None:
            self.teacher_budget = str(self.teacher_budget)  # read by TeacherBudget.parse when the trainer starts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def run_defining(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run in its folder (the fields marked ``run``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("run")}


@dataclass
class TeacherArguments:
    """The teacher of the ``judge`` and ``train`` commands (in Python, build a teacher object instead:
    `OpenAITeacher`, `LlamaCppTeacher`, ...)."""

    teacher: str | None = setting(
        None,
        "an OpenAI-compatible base URL (comma-separate several), 'local' (in-process llama.cpp), "
        "'local-server' (llama.cpp's server, started for you), 'local:NAME' / 'local-server:NAME' (a fetched "
        "model), a .gguf path, 'batch:DIR' (pairs written as batch request lines for OpenAI's Batch API or vLLM's "
        "run_batch; the run stops until their output is imported), or 'oracle' / 'oracle:0.2' / 'oracle:0.4:yes' "
        "(ground truth, for evaluation only; "
        "that share of answers flipped). Default: $LMTX_TEACHER_URL, else $OPENAI_BASE_URL (the openai client's: "
        "documents go to that endpoint), else the fetched local model",
        group="teacher",
        metavar="SPEC",
    )
    teacher_model: str | None = setting(
        None,
        "the model an endpoint serves (default: the one it lists), or a .gguf path",
        group="teacher",
        metavar="NAME",
    )
    prompt: str = setting(
        "compact",
        "the prompt layout: 'compact' (the question before the document: a few tokens a label) or "
        "'reference' (the paper's)",
        group="teacher",
        choices=("compact", "reference"),
    )
    logprobs: bool = setting(
        True,
        "endpoint teachers: graded p(yes) from the answer's logprobs (--no-logprobs: yes/no only; a server that gives "
        "none is detected and warned about)",
        group="teacher",
    )
    concurrency: str | None = setting(
        None,
        "endpoint teachers: requests in flight per URL, 'auto' (the default: sized to the server, backing off on "
        "429s, 5xx and timeouts) or a number (a hosted API: what its rate limit allows)",
        group="teacher",
        metavar="N|auto",
        parse=in_flight,
    )
    submit: str | None = setting(
        None,
        "with --teacher batch:DIR: run each batch through OpenAI's Batch API (upload, wait, download, import; a "
        "rerun waits for the same batch) rather than stopping for you to run it",
        group="teacher",
        choices=("openai",),
    )
    rpm: int | None = setting(
        None,
        "endpoint teachers: at most N requests in any 60 s, retries included",
        group="teacher",
        minimum=1,
        metavar="N",
    )
    tpm: int | None = setting(
        None,
        "endpoint teachers: at most N tokens in any 60 s (estimated before sending)",
        group="teacher",
        minimum=1,
        metavar="N",
    )
    import_judgments: list[str] = setting(
        help="answers exported by `st-lmtx judgments export` for this teacher, added to its cache first (repeatable)",
        group="teacher",
        metavar="FILE",
        default_factory=list,
    )
    teacher_memory_dir: str | None = setting(
        None,
        "in-process teacher: keep evaluated documents on disk in DIR too, so that a run resumed in "
        "another process does not evaluate them again",
        group="teacher",
        metavar="DIR",
    )
    # Python only.
    timeout: float = setting(120.0, "endpoint teachers: seconds per request", group="teacher", minimum=0, cli=False)
    max_doc_words: int = setting(
        180, "documents are truncated to this many words for the teacher", group="teacher", minimum=1, cli=False
    )
    memory_mb: float | None = setting(
        None,
        "in-process teacher: RAM for evaluated documents (default: a quarter of the RAM, at most 6144)",
        group="teacher",
        minimum=0,
        cli=False,
    )

    def __post_init__(self) -> None:
        self.import_judgments = list(self.import_judgments)
        validate(self)
