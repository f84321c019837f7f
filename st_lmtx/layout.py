"""The output folder's layout: every file and folder a run writes, named here and nowhere else.

::

    OUTPUT/                          the tagger: what LMTXTagger.load opens and push_to_hub uploads
        (the sentence-transformers model's files)
        lmtx_labels.jsonl            the label set
        lmtx_index.faiss (+ .json)   the label index and how it was built
        lmtx_run.json                the run's record
        README.md                    the model card
        lmtx-work/                   what a resumed run needs; never uploaded
            run.lock                 held while a run uses the folder
            state.json               the run's record so far
            teacher_cache.sqlite     the teacher's answers (also `judge --cache DIR`'s file)
            base-model/              the base model as the run began
            round-01/ ...            a round's files:
                shortlist.npz        its top-k labels a document
                pseudo_labels.jsonl  the teacher's answers on them
                model/               its trained model
                metrics.json         its record
                checkpoints/         sentence-transformers' output folder while it trains
"""

from __future__ import annotations

from pathlib import Path

WORK_DIR = "lmtx-work"
LABELS_FILE = "lmtx_labels.jsonl"
INDEX_FILE = "lmtx_index.faiss"
RUN_FILE = "lmtx_run.json"
CARD_FILE = "README.md"
STATE_FILE = "state.json"
LOCK_FILE = "run.lock"
CACHE_FILE = "teacher_cache.sqlite"
BASE_MODEL_DIR = "base-model"
ROUND_DIRS = "round-*"
SHORTLIST_FILE = "shortlist.npz"
PSEUDO_LABELS_FILE = "pseudo_labels.jsonl"
ROUND_MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
CHECKPOINTS_DIR = "checkpoints"
# What an upload of the output folder leaves out.
UPLOAD_IGNORE = [f"{WORK_DIR}/**", "*.sqlite", "*.sqlite-*", f"{CHECKPOINTS_DIR}/**"]


def round_dir(work_dir: Path, r: int) -> Path:
    """Round ``r``'s folder under ``work_dir`` (``lmtx-work``)."""
    return work_dir / f"round-{r:02d}"
