"""The output folder's root: the final model (the kept round's, or the average of the rounds') as a tagger
(model, label set, index), its model card, the metrics picture and ``lmtx_run.json``, the run's summary (written
last: its presence means the folder is whole).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from st_lmtx.files import atomic_path, atomic_write_text
from st_lmtx.inputs import LabelSet
from st_lmtx.model_card import PLOT_FILE, plot_metrics, render_model_card
from st_lmtx.shortlist import IndexConfig, LabelIndex, encode
from st_lmtx.tagger import WORK_DIR, save_label_files
from st_lmtx.trainer.arguments import LMTXArguments
from st_lmtx.trainer.run_state import RunState
from st_lmtx.trainer.training import make_loss

RUN_FILE = "lmtx_run.json"


def write_final_folder(root: Path, model: SentenceTransformer, labels: LabelSet, state: RunState,
                       args: LMTXArguments, index_config: IndexConfig, base_model_name: str,
                       teacher: dict[str, Any], has_eval: bool) -> None:  # fmt: skip
    """``teacher``: the teacher's :meth:`describe` (no endpoint, no key)."""
    _save_model_into(model, root)
    label_embeddings = encode(model, labels.texts, args.encode_batch_size, False)
    save_label_files(root, labels, LabelIndex.build(label_embeddings, index_config))
    has_plot = plot_metrics(state.rounds, root / PLOT_FILE) is not None
    eval_keys = [f"P@{k}" for k in args.eval_k] + [f"R@{max(args.eval_k)}"] if has_eval else []
    loss = make_loss(model, args)
    summary = {
        "base_model": base_model_name,
        "base_model_is_hub": not Path(base_model_name).exists(),
        "num_labels": len(labels),
        "teacher": teacher,
        "rounds": state.rounds,
        "best_round": state.best_round,
        "final": state.final,
        "args": args.to_dict(),
        "loss": loss.get_config_dict(),
        "citation": loss.citation,
        "has_plot": has_plot,
        "eval_keys": eval_keys,
        "eval_name": "eval_data" if has_eval else None,
    }
    atomic_write_text(root / "README.md", render_model_card(summary))
    atomic_write_text(root / RUN_FILE, json.dumps(
        {"best_round": state.best_round, "stop_reason": state.stop_reason, "rounds": state.rounds, "final": state.final,
         "teacher": teacher | {"endpoints": None}, "args": args.to_dict()}, indent=2))  # fmt: skip


def _save_model_into(model: SentenceTransformer, root: Path) -> None:
    # The root also holds lmtx-work/, so it cannot be swapped as a whole: the model is saved aside, then each of
    # its files and module folders is moved into place atomically.
    (root / WORK_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / WORK_DIR, prefix=".final-model-") as tmp:
        staging = Path(tmp)
        model.save(str(staging), create_model_card=False)
        for entry in sorted(staging.iterdir()):
            if entry.is_dir():
                with atomic_path(root / entry.name) as tmp:
                    os.replace(entry, tmp)
            else:
                os.replace(entry, root / entry.name)
