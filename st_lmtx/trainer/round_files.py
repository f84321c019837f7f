"""RoundFolder: the files of one curriculum round, ``lmtx-work/round-NN/``, each written atomically.

- ``shortlist.npz``: the round's top-k labels per document (derived: rebuilt when unreadable);
- ``pseudo_labels.jsonl``: the teacher's answers on that shortlist (derived from the shortlist and the teacher's
  cache: rebuilt when unreadable);
- ``model/``: the round's trained model (not derived: unreadable means the round is redone, see the error);
- ``metrics.json``: the round's record, also kept in ``state.json``.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

from sentence_transformers import SentenceTransformer

from st_lmtx.errors import RunFileError
from st_lmtx.files import atomic_path
from st_lmtx.inputs import LabelSet
from st_lmtx.layout import METRICS_FILE, PSEUDO_LABELS_FILE, ROUND_MODEL_DIR, SHORTLIST_FILE, round_dir
from st_lmtx.pseudo_labels import PseudoLabels
from st_lmtx.shortlist import Shortlist
from st_lmtx.trainer.records import RoundRecord

logger = logging.getLogger(__name__)


class RoundFolder:
    def __init__(self, work_dir: Path, r: int) -> None:
        self.round = r
        self.path = round_dir(work_dir, r)
        self.shortlist_path = self.path / SHORTLIST_FILE
        self.pseudo_labels_path = self.path / PSEUDO_LABELS_FILE
        self.model_path = self.path / ROUND_MODEL_DIR
        self.metrics_path = self.path / METRICS_FILE

    @staticmethod
    def remove(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def load_shortlist(self, num_documents: int) -> Shortlist | None:
        """The saved shortlist, or None when there is none or it is unreadable (then it is mined again)."""
        if not self.shortlist_path.exists():
            return None
        try:
            shortlist = Shortlist.load(self.shortlist_path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            logger.warning("%s is unreadable (%s): mining the shortlist again", self.shortlist_path, e)
            return None
        if len(shortlist) != num_documents:
            logger.warning(
                "%s has %d documents, the run %d: mining the shortlist again",
                self.shortlist_path,
                len(shortlist),
                num_documents,
            )
            return None
        return shortlist

    def save_shortlist(self, shortlist: Shortlist) -> None:
        shortlist.save(self.shortlist_path)

    def load_pseudo_labels(self, documents: int) -> PseudoLabels | None:
        """The saved pseudo-labels of the round's ``documents``, or None when there are none or they are unreadable
        (then rebuilt): a file cut at a line's end reads as JSON but holds fewer documents, and is unreadable."""
        if not self.pseudo_labels_path.exists():
            return None
        try:
            pseudo = PseudoLabels.load(self.pseudo_labels_path)
            if len(pseudo.docs) != documents:
                raise ValueError(f"{len(pseudo.docs)} documents, the round has {documents}")
            return pseudo
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            logger.warning(
                "%s is unreadable (%s): rebuilding it from the shortlist and the teacher's cache",
                self.pseudo_labels_path,
                e,
            )
            return None

    def save_pseudo_labels(self, pseudo: PseudoLabels, doc_ids: list[str], labels: LabelSet) -> None:
        pseudo.save(self.pseudo_labels_path, doc_ids, labels)

    def has_model(self) -> bool:
        return (self.model_path / "modules.json").exists()

    def save_model(self, model: SentenceTransformer) -> None:
        save_model(model, self.model_path)

    def load_model(self, device: str, max_seq_length: int | None) -> SentenceTransformer:
        return load_saved_model(
            self.model_path,
            device,
            max_seq_length,
            recovery=f"delete {self.path} and run fit again: the run resumes after round "
            f"{self.round - 1} and redoes this round from the teacher's cached answers",
        )

    def save_metrics(self, record: RoundRecord) -> None:
        record.write(self.metrics_path)


def save_model(model: SentenceTransformer, path: Path) -> None:
    """Save into a temporary folder, then move it into place: a crash leaves the old model or the new one."""
    with atomic_path(path) as tmp:
        model.save(str(tmp), create_model_card=False)


def load_saved_model(path: Path, device: str, max_seq_length: int | None, recovery: str) -> SentenceTransformer:
    try:
        model = SentenceTransformer(str(path), device=device)
    except Exception as e:  # safetensors, JSON, tokenizer and missing-file errors all mean the same here
        raise RunFileError(
            f"the model in {path} is unreadable ({type(e).__name__}: {e}). To recover, {recovery}."
        ) from e
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model
