"""The model card (README.md, from ``model_card_template.md``) and the metrics picture of a trained LMTX tagger.

Both are drawn from the run's `RunRecord`. The card names the teacher model and never its endpoint or key:
the record's teacher is `Teacher.describe` without its endpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from st_lmtx.files import atomic_path
from st_lmtx.teacher.budget import TeacherBudget, format_seconds
from st_lmtx.trainer.records import RoundRecord, RunRecord
from st_lmtx.trainer.spending import spending_rule

MODEL_CARD_TAGS = ["sentence-transformers", "lmtx", "zero-shot", "extreme-classification", "text-classification"]
PLOT_FILE = "lmtx_metrics.png"
TEMPLATE = "model_card_template.md"


def plot_metrics(record: RunRecord, path: str | Path) -> Path | None:
    """A PNG of the stop metric and LLM-judged P@1 per round and, where ground truth was given, P@k per round."""
    import matplotlib.pyplot as plt

    fig = metrics_figure(record)
    if fig is None:
        return None
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def metrics_figure(record: RunRecord):
    """The figure `plot_metrics` saves (None without rounds); the legend sits beside the axes, where it
    cannot cover a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = record.rounds
    if not rounds:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=110)
    xs = [r.round for r in rounds]
    series: dict[str, list[float | None]] = {"LLM-judged P@1 (dev)": [r.dev.get("llm_P@1") for r in rounds]}
    for key in ("P@1", "P@5", "R@10"):
        series[f"{key} (eval)"] = [(r.eval or {}).get(key) for r in rounds]
    for name, values in series.items():
        points = [(x, 100 * v) for x, v in zip(xs, values) if v is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=name, linestyle="--" if "LLM" in name else "-")
    ax.set_xlabel("round (0 = base model, zero-shot)")
    ax.set_ylabel("%")
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.set_title("LMTX curriculum")
    fig.tight_layout()
    return fig


def render_model_card(
    record: RunRecord, loss_config: dict[str, Any], citation: str, has_plot: bool, eval_keys: list[str]
) -> str:
    """The card of the run ``record``: what taught the tagger, each round's figures and the stop metric that chose
    the kept round."""
    env = Environment(
        loader=PackageLoader("st_lmtx.trainer", "."), undefined=StrictUndefined, keep_trailing_newline=True
    )
    metric = record.stop_metric
    dev_keys = list(dict.fromkeys([metric, "llm_P@1"]))
    header = ["round", "documents", "pairs judged", "yes-rate", "training pairs"]
    header += [f"dev {k}" + (" (stop metric)" if k == metric else "") for k in dev_keys] + eval_keys
    rows = [_row(r, record, dev_keys, eval_keys) for r in record.rounds]
    if record.final is not None:
        rows.append(_row(record.final, record, dev_keys, eval_keys))
    final = record.final
    return env.get_template(TEMPLATE).render(
        tags=MODEL_CARD_TAGS,
        base_model=record.base_model,
        base_model_is_hub=not Path(record.base_model).exists(),
        num_labels=record.num_labels,
        teacher=record.teacher,
        args=record.args,
        trained_rounds=len(record.trained_rounds),
        stop_metric=metric,
        dev_documents=len(record.dev_documents) or record.args.get("dev_size"),
        best_round=record.best_round,
        stop_reason=record.stop_reason,
        final_model=(
            f"the average of rounds {', '.join(map(str, final.averaged_rounds))}'s weights"
            if final is not None
            else f"round {record.best_round}'s model"
        ),
        cost=_cost_line(record),
        loss=loss_config,
        notes=_flag_lines(record) + _warning_lines(record),
        header=header,
        rows=rows,
        eval_keys=eval_keys,
        has_plot=has_plot,
        citation=citation.strip(),
    )


def _row(r: RoundRecord, record: RunRecord, dev_keys: list[str], eval_keys: list[str]) -> list[str]:
    stats = r.pseudo_labels
    if r.averaged_rounds is not None:
        name = f"average of {', '.join(map(str, r.averaged_rounds))} (final)"
    else:
        name = str(r.round) + (" (zero-shot)" if r.round == 0 else "") + (" *" if r.round == record.best_round else "")
    cells = [
        name,
        str(stats.documents) if stats else "-",
        str(stats.pairs) if stats else "-",
        f"{stats.yes_rate:.3f}" if stats else "-",
        str(r.training_pairs) if stats else "-",
    ]
    for k in dev_keys:
        value = r.dev.get(k)
        cells.append("-" if value is None else f"{value:.2f}" if k.endswith("margin") else f"{100 * value:.2f}")
    cells += ["-" if (r.eval or {}).get(k) is None else f"{100 * r.eval[k]:.2f}" for k in eval_keys]
    return cells


def _cost_line(record: RunRecord) -> str:
    """What the teacher judged anew, in all and per round (dev judging included), and the budget when there was
    one, with the rule that spent it."""
    total = record.teacher_spent
    per_round = ", ".join(f"{r.teacher_usage.pairs - r.teacher_usage.cache_hits:,}" for r in record.rounds)
    text = (
        f"{total.pairs - total.cache_hits:,} pairs judged anew (rounds 0-{len(record.rounds) - 1}: {per_round}), "
        f"{total.prompt_tokens + total.completion_tokens:,} tokens, {format_seconds(total.seconds)} of judging"
    )
    budget = record.args.get("teacher_budget")
    if budget:
        spent = TeacherBudget.parse(budget)
        rule = spending_rule(record.args["shortlist_k"])
        text += f"; budget {spent}, {spent.format(spent.spent(total))} spent ({rule})"
    return text


def _flag_lines(record: RunRecord) -> list[str]:
    """The last round's count of documents that seem to address the teacher, and of all-"yes" documents."""
    stats = [r.pseudo_labels for r in record.rounds if r.pseudo_labels is not None]
    if not stats:
        return []
    last = stats[-1]
    dropped = (
        " (their instruction sentences were dropped before judging)" if record.teacher.get("drop_instructions") else ""
    )
    return [
        f"Training documents that seem to address the teacher (instruction patterns): "
        f'{last.instruction_like_documents:,}{dropped}; documents the teacher said "yes" to for every '
        f"shortlisted label: {last.all_yes_documents:,} (of {last.documents:,})"
    ]


def _warning_lines(record: RunRecord) -> list[str]:
    """What the rounds' answers said about the teacher: a reader of the card on the Hub should learn that the
    tagger was taught by a judge too strict, too lenient or garbled to trust much."""
    return [f"Warning, round {r.round}: {w}" for r in record.rounds for w in r.warnings]
