"""The model card (README.md) and the metrics picture of a trained LMTX tagger.

The card names the teacher model and never its endpoint or key: only what :meth:`Teacher.describe` returns
minus anything URL-like is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from st_lmtx.files import atomic_path
from st_lmtx.pseudo_labels import teacher_warnings

logger = logging.getLogger(__name__)

MODEL_CARD_TAGS = ["sentence-transformers", "lmtx", "zero-shot", "extreme-classification", "text-classification"]
PLOT_FILE = "lmtx_metrics.png"

def plot_metrics(rounds: list[dict[str, Any]], path: str | Path) -> Path | None:
    """A PNG of the LLM-judged P@1 per round and, where ground truth was given, P@k per round."""
    import matplotlib.pyplot as plt

    fig = metrics_figure(rounds)
    if fig is None:
        return None
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def metrics_figure(rounds: list[dict[str, Any]]):
    """The figure :func:`plot_metrics` saves (None without rounds); the legend sits beside the axes, where it
    cannot cover a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rounds:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=110)
    xs = [r["round"] for r in rounds]
    series: dict[str, list[float | None]] = {}
    for r in rounds:
        for key, value in r.get("dev", {}).items():
            if key == "llm_P@1":
                series.setdefault("LLM-judged P@1 (dev)", [None] * len(rounds))[xs.index(r["round"])] = 100 * value
        for key, value in r.get("eval", {}).items():
            if key.split("@")[0] in ("P", "R") and key in ("P@1", "P@5", "R@10"):
                series.setdefault(f"{key} (eval)", [None] * len(rounds))[xs.index(r["round"])] = 100 * value
    for name, values in series.items():
        points = [(x, v) for x, v in zip(xs, values) if v is not None]
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


def _flag_lines(rounds: list[dict[str, Any]], teacher: dict[str, Any]) -> list[str]:
    """The last round's count of documents that seem to address the teacher, and of all-"yes" documents."""
    flagged = [r["pseudo_labels"] for r in rounds if "instruction_like_documents" in r.get("pseudo_labels", {})]
    if not flagged:
        return []
    last = flagged[-1]
    dropped = " (their instruction sentences were dropped before judging)" if teacher.get("drop_instructions") else ""
    return [f"- Training documents that seem to address the teacher (instruction patterns): "
            f"{last['instruction_like_documents']:,}{dropped}; documents the teacher said \"yes\" to for every shortlisted "
            f"label: {last['all_yes_documents']:,} (of {last.get('documents', 0):,})"]  # fmt: skip


def _warning_lines(rounds: list[dict[str, Any]]) -> list[str]:
    """What the rounds' answers said about the teacher (:func:`teacher_warnings`): a reader of the card on the Hub
    should learn that the tagger was taught by a judge too strict, too lenient or garbled to trust much."""
    keys = ("documents", "pairs", "documents_with_yes", "yes_rate", "unparseable")
    lines = []
    for r in rounds:
        stats = r.get("pseudo_labels", {})
        if all(k in stats for k in keys):  # records older than documents_with_yes are left out
            lines += [f"- Warning, round {r['round']}: {w}" for w in teacher_warnings(stats)]
    return lines


def render_model_card(summary: dict[str, Any]) -> str:
    """``summary``: base_model, num_labels, teacher (describe()), rounds (list of per-round dicts), best_round,
    final (the averaged final model's record, or None), args, loss (config dict), citation (the loss's BibTeX),
    has_plot, eval_keys, eval_name."""
    teacher = {k: v for k, v in summary["teacher"].items() if k not in ("endpoints", "base_url", "api_key")}
    rounds = summary["rounds"]
    final = summary.get("final")
    tags = "\n".join(f"- {t}" for t in MODEL_CARD_TAGS)
    front = ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity", "tags:", tags]
    if summary.get("base_model_is_hub"):
        front.append(f"base_model: {summary['base_model']}")
    lines = [
        *front,
        "---",
        "",
        "# LMTX zero-shot tagger",
        "",
        f"A bi-encoder fine-tuned from `{summary['base_model']}` with [LMTX](https://arxiv.org/abs/2406.09288) to tag "
        f"documents with **{summary['num_labels']:,} labels**, with no human annotation: an LLM teacher "
        f"(`{teacher.get('model', '?')}`) judged shortlisted (document, label) pairs during training only. At "
        "inference the bi-encoder and a FAISS index over the label embeddings do all the work.",
        "",
        "## Usage",
        "",
        "```python",
        "from st_lmtx import LMTXTagger",
        "",
        'tagger = LMTXTagger.load("path/or/hub-id")',
        'tagger.predict(["Some document text ..."], top_k=5)',
        "```",
        "",
        "The folder is also a plain `SentenceTransformer`; the label set (`lmtx_labels.jsonl`) and the index "
        "(`lmtx_index.faiss`) sit beside the model.",
        "",
        "## Training",
        "",
        f"- Teacher: `{teacher.get('model', '?')}` ({teacher.get('backend', '?')} backend"
        + (", graded p(yes) scores" if teacher.get("graded") else "")
        + (f", `{teacher['prompt']}` prompt" if teacher.get("prompt") else "")
        + ")",
        f"- Rounds: {len([r for r in rounds if r['round'] > 0])}, best round: {summary['best_round']} (by "
        f"`{summary['args'].get('stop_metric', 'llm_P@1')}` on the dev sample"
        + (", held out of training)" if summary["args"].get("dev_source") == "held-out" else ")"),
        "- Final model: " + (f"the average of rounds {', '.join(map(str, final['rounds']))}'s weights "
                             "(`average_rounds`)" if final else f"round {summary['best_round']}'s"),
        f"- Recipe: `{summary['args'].get('recipe', 'reference')}` (`st_lmtx.recipes.RECIPES`; the settings it "
        "filled, and any given explicitly, are in `lmtx_run.json`)",
        f"- Positives: `{summary['args'].get('positives')}`; training restarts from the base model each round: "
        f"{summary['args'].get('restart_from_base')}",
        f"- Loss: `LMTXTripletLoss` {summary.get('loss', {})}",
        *_flag_lines(rounds, teacher),
        *_warning_lines(rounds),
        "",
        "| round | documents | pairs judged | yes-rate | training pairs | LLM-judged P@1 (dev) | "
        + " | ".join(summary.get("eval_keys", []))
        + (" |" if summary.get("eval_keys") else ""),
        "|---|---|---|---|---|---|" + "---|" * len(summary.get("eval_keys", [])),
    ]
    for r in rounds + ([final] if final else []):
        stats = r.get("pseudo_labels", {})
        dev = r.get("dev", {}).get("llm_P@1")
        evals = [r.get("eval", {}).get(k) for k in summary.get("eval_keys", [])]
        cells = [
            f"average of {', '.join(map(str, r['rounds']))} (final)" if r is final
            else str(r["round"]) + (" (zero-shot)" if r["round"] == 0 else ""),
            str(stats.get("documents", "-")),
            str(stats.get("pairs", "-")),
            f"{stats['yes_rate']:.3f}" if "yes_rate" in stats else "-",
            str(r.get("training_pairs", "-")),
            f"{100 * dev:.2f}" if dev is not None else "-",
            *[f"{100 * v:.2f}" if v is not None else "-" for v in evals],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if summary.get("eval_name"):
        lines += [f"Evaluation columns: `{summary['eval_name']}` (ground truth), in %.", ""]
    if summary.get("has_plot"):
        lines += [f"![LMTX metrics per round]({PLOT_FILE})", ""]
    lines += ["## Citation", "", "```bibtex", summary["citation"].strip(), "```", ""]
    return "\n".join(lines)
