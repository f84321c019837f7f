"""The output folder's root: the final model (the kept round's, or the average of the rounds') as a tagger
(model, label set, index), its model card, the metrics picture and ``lmtx_run.json``, the run's summary (written
last: its presence means the folder is whole).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sentence_transformers import SentenceTransformer

from st_lmtx.arguments import LMTXArguments
from st_lmtx.files import atomic_path, atomic_write_text
from st_lmtx.inputs import LabelSet
from st_lmtx.layout import CARD_FILE, RUN_FILE, WORK_DIR
from st_lmtx.shortlist import IndexConfig, LabelIndex, encode
from st_lmtx.tagger import save_label_files
from st_lmtx.trainer.model_card import PLOT_FILE, plot_metrics, render_model_card
from st_lmtx.trainer.records import RunRecord
from st_lmtx.trainer.training import make_loss


def write_final_folder(
    root: Path,
    model: SentenceTransformer,
    labels: LabelSet,
    record: RunRecord,
    args: LMTXArguments,
    index_config: IndexConfig,
    has_eval: bool,
) -> None:
    """The final model, its label set and index, the metrics picture, the model card and ``lmtx_run.json``."""
    _save_model_into(model, root)
    label_embeddings = encode(model, labels.texts, args.encode_batch_size, False)
    save_label_files(root, labels, LabelIndex.build(label_embeddings, index_config))
    has_plot = plot_metrics(record, root / PLOT_FILE) is not None
    eval_keys = [f"P@{k}" for k in args.eval_k] + [f"R@{max(args.eval_k)}"] if has_eval else []
    loss = make_loss(model, args)
    card = render_model_card(
        record, loss_config=loss.get_config_dict(), citation=loss.citation, has_plot=has_plot, eval_keys=eval_keys
    )
    atomic_write_text(root / CARD_FILE, card)
    record.write_summary(root / RUN_FILE)


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
