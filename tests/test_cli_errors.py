"""Every error st-lmtx raises on purpose is one line on stderr at the command line, `st-lmtx: error: ...`, with exit
code 2 (bad input or configuration) or 1 (the teacher or the run failed); --debug shows the traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from st_lmtx.cli import main
from st_lmtx.errors import (
    ArgumentsError,
    CacheFileError,
    CacheLockedError,
    InputError,
    JudgmentsFileError,
    LMTXError,
    ModelFetchError,
    NotATaggerError,
    NothingToTrainError,
    RunFileError,
    RunInUseError,
    RunMismatchError,
    TeacherBudgetExceeded,
    TeacherConfigError,
    TeacherError,
)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    # (the fake endpoint's own thread reports the connection it served last; that is not the command's output)
    server = ("-" * 40, "Exception occurred during processing of request")
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(server)]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("st-lmtx: error: "), err
    return lines[0]


def train_argv(toy_lfxmc, model, output, *extra: str) -> list[str]:
    """One oracle round on the toy set, quiet."""
    small = "--teacher oracle --max-rounds 1 --shortlist-k 3 --batch-size 4 --dev-size 4".split()
    return ["-q", "train", "--data", str(toy_lfxmc), "--model", model, "--output-dir", str(output), *small, *extra]


def train(toy_lfxmc, model, output, *extra: str) -> int:
    return main(train_argv(toy_lfxmc, model, output, *extra))


def judge(toy_lfxmc, model, cache, teacher: str, *extra: str) -> int:
    """Judge the toy set's shortlists, quiet."""
    return main(
        [
            "-q",
            "judge",
            "--data",
            str(toy_lfxmc),
            "--model",
            model,
            "--cache",
            str(cache),
            "--teacher",
            teacher,
            *extra,
        ]
    )


def test_every_error_class_has_the_exit_code_of_its_kind():
    bad_input = (
        InputError,
        ArgumentsError,
        TeacherConfigError,
        JudgmentsFileError,
        RunFileError,
        CacheFileError,
        RunMismatchError,
        NotATaggerError,
        CacheLockedError,
        RunInUseError,
    )
    assert all(issubclass(e, LMTXError) and e.exit_code == 2 for e in bad_input)
    failed = (TeacherError, TeacherBudgetExceeded, NothingToTrainError, ModelFetchError)
    assert all(issubclass(e, LMTXError) and e.exit_code == 1 for e in failed)
    import st_lmtx
    import st_lmtx.errors

    # Every error is exported beside the others.
    errors = {n for n, v in vars(st_lmtx.errors).items() if isinstance(v, type) and issubclass(v, LMTXError)}
    assert errors <= set(st_lmtx.__all__) and all(getattr(st_lmtx, n) is getattr(st_lmtx.errors, n) for n in errors)


def test_a_missing_input_file(toy_lfxmc, tmp_path, tiny_model_dir, capsys):
    code = main(
        [
            "-q",
            "train",
            "--docs",
            str(tmp_path / "missing.jsonl"),
            "--labels",
            str(toy_lfxmc / "lbl.json"),
            "--model",
            tiny_model_dir,
            "--teacher",
            "oracle",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert "missing.jsonl does not exist" in one_error_line(capsys)


def test_a_setting_out_of_range(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out", "--max-docs", "0") == 2
    assert "max_docs must be >= 1; got 0" in one_error_line(capsys)
    assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out", "--learning-rate", "nan") == 2
    assert "learning_rate must be a finite number; got nan" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "--model", "m", "--input", "f", "--top-k", "0"],
        ["judge", "--shortlist-k", "-1"],
        ["evaluate", "--model", "m", "--batch-size", "0"],
    ],
)
def test_a_count_that_must_be_positive(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_a_model_that_is_not_there(toy_lfxmc, tmp_path, capsys):
    assert main(["-q", "evaluate", "--data", str(toy_lfxmc), "--model", str(tmp_path / "nope")]) == 2
    assert "nope does not exist: give a SentenceTransformer folder or a Hub name" in one_error_line(capsys)
    assert main(["-q", "evaluate", "--data", str(toy_lfxmc), "--model", str(toy_lfxmc / "lbl.json")]) == 2
    assert "lbl.json is a file, not a model folder" in one_error_line(capsys)
    out = tmp_path / "run"
    argv = ["-q", "train", "--data", str(toy_lfxmc), "--model", str(tmp_path / "nope"), "--output-dir", str(out)]
    assert main([*argv, "--teacher", "oracle"]) == 2
    assert "nope does not exist" in one_error_line(capsys)
    assert not out.exists()  # refused before the teacher's cache was made there


def test_a_model_path_under_the_home_folder(tiny_model_dir, monkeypatch):
    from st_lmtx import LMTXArguments
    from st_lmtx.models import load_model

    monkeypatch.setenv("HOME", str(Path(tiny_model_dir).parent))
    assert load_model(f"~/{Path(tiny_model_dir).name}").get_embedding_dimension() == 32
    assert LMTXArguments(output_dir="~/run").output_dir == str(Path(tiny_model_dir).parent / "run")


@pytest.mark.parametrize(
    "url, why",
    [
        ("http://127.0.0.1:99999/v1", "Port out of range"),
        ("http://user:sk-secret@[::1/v1", "Invalid IPv6 URL"),
        ("http://", "no host"),
        ("http://127.0.0.1:8000/v1,https://exa mple.com/v1", "no host, or a space"),
    ],
)
def test_a_malformed_teacher_url(url, why, toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out", "--teacher", url) == 2
    line = one_error_line(capsys)
    assert f"a teacher URL is malformed ({why}" in line and "sk-secret" not in line  # a URL may hold a key


def test_an_endpoint_that_cannot_be_reached(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert judge(toy_lfxmc, tiny_model_dir, tmp_path / "c", f"http://127.0.0.1:{port}/v1") == 1
    line = one_error_line(capsys)
    assert f"cannot be reached (GET http://127.0.0.1:{port}/v1/models" in line and "server running" in line


def test_an_endpoint_that_refuses_the_key(toy_lfxmc, tiny_model_dir, fake_server, tmp_path, capsys):
    fake_server.models_status = 401
    assert judge(toy_lfxmc, tiny_model_dir, tmp_path / "c", fake_server.url) == 2
    line = one_error_line(capsys)
    assert "refused the key" in line and "HTTP 401" in line and "OPENAI_API_KEY" in line


def test_judge_refuses_a_bad_budget_or_teacher_before_reading_the_model(
    toy_lfxmc, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("st_lmtx.models.load_model", no_model)
    assert judge(toy_lfxmc, tiny_model_dir, tmp_path / "c", "oracle", "--teacher-budget", "lots") == 2
    assert "cannot read the budget 'lots'" in one_error_line(capsys)
    assert judge(toy_lfxmc, tiny_model_dir, tmp_path / "c", "bogus") == 2
    assert "unknown teacher 'bogus'" in one_error_line(capsys)


def test_a_bad_teacher_specification(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out", "--teacher", "oracle:2") == 2
    assert "the flipped fraction must be in [0, 1]" in one_error_line(capsys)


def test_no_teacher_configured(toy_lfxmc, tiny_model_dir, tmp_path, capsys, monkeypatch):
    for name in ("LMTX_TEACHER_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("st_lmtx.teacher.factory.find_default_model", lambda: None)
    code = main(
        ["-q", "train", "--data", str(toy_lfxmc), "--model", tiny_model_dir, "--output-dir", str(tmp_path / "out")]
    )
    assert code == 2
    line = one_error_line(capsys)
    assert "No teacher" in line and "st-lmtx fetch-model" in line and "LMTX_TEACHER_URL" in line


def test_importing_a_missing_judgments_file_creates_no_cache(tmp_path, capsys):
    code = main(["-q", "judgments", "import", str(tmp_path / "none.jsonl.gz"), "--cache", str(tmp_path / "cache")])
    assert code == 2
    assert "none.jsonl.gz does not exist; nothing was imported" in one_error_line(capsys)
    assert not (tmp_path / "cache").exists()


def test_a_malformed_judgments_file(tmp_path, capsys):
    bad = tmp_path / "j.jsonl"
    bad.write_text('{"namespace": "x"}\nnot json\n')
    assert main(["-q", "judgments", "import", str(bad), "--cache", str(tmp_path / "cache.sqlite")]) == 2
    line = one_error_line(capsys)
    assert "j.jsonl:1" in line and "nothing was imported" in line


def test_an_endpoint_that_refuses_is_a_teacher_failure(toy_lfxmc, tiny_model_dir, fake_server, tmp_path, capsys):
    fake_server.faults = ["400"] * 50  # a client error: not retried
    code = judge(toy_lfxmc, tiny_model_dir, tmp_path / "c", fake_server.url, "--teacher-model", "fake-model")
    assert code == 1
    assert "after 1 attempt: HTTP 400 (not a transient error" in one_error_line(capsys)
    asked = [e["doc"] for e in fake_server.log]
    assert 1 <= len(asked) == len(set(asked)) <= 8  # each document in flight asked once, none again


def test_a_spent_budget(toy_lfxmc, tiny_model_dir, fake_server, tmp_path, capsys):
    code = judge(
        toy_lfxmc,
        tiny_model_dir,
        tmp_path / "c",
        fake_server.url,
        "--teacher-model",
        "fake-model",
        "--teacher-budget",
        "3",
    )
    assert code == 1
    assert "budget of 3 pairs is spent" in one_error_line(capsys)
    assert len(fake_server.log) == 3


def test_an_output_folder_of_another_run(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out") == 0
    capsys.readouterr()
    assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out", "--seed", "7") == 2
    line = one_error_line(capsys)
    assert "holds a run with different args (seed: 42 there, 7 now)" in line and "another output folder" in line


def test_a_broken_run_file(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out") == 0
    capsys.readouterr()
    state = tmp_path / "out" / "lmtx-work" / "state.json"
    state.write_text(state.read_text()[:100])
    assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out", "--max-rounds", "2") == 2
    assert "delete state.json" in one_error_line(capsys)


def test_a_broken_cache(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "teacher_cache.sqlite").write_bytes(b"not a database" * 100)
    code = judge(toy_lfxmc, tiny_model_dir, tmp_path / "c", "oracle")
    assert code == 2
    assert ".recover" in one_error_line(capsys)


def test_a_cache_locked_by_another_process(toy_lfxmc, tiny_model_dir, tmp_path, capsys, monkeypatch):
    import sqlite3

    from st_lmtx.teacher.cache import JudgmentCache

    monkeypatch.setattr("st_lmtx.teacher.cache.PATIENCE", 0.5)
    JudgmentCache(tmp_path / "c" / "teacher_cache.sqlite").close()
    holder = subprocess.Popen(  # another process in the middle of a long write
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "db.execute('BEGIN IMMEDIATE'); print('held', flush=True); time.sleep(60)",
            str(tmp_path / "c" / "teacher_cache.sqlite"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert judge(toy_lfxmc, tiny_model_dir, tmp_path / "c", "oracle") == 2
    finally:
        holder.kill()
        holder.wait()
    line = one_error_line(capsys)
    assert "is locked by another process" in line and "judgments export" in line
    assert "recover" not in line and "move it away" not in line
    with sqlite3.connect(tmp_path / "c" / "teacher_cache.sqlite") as db:  # the file was left alone
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_run_folder_another_process_is_running_in(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    work = tmp_path / "out" / "lmtx-work"
    holder = subprocess.Popen(  # a run in progress there (its hold on the folder, as fit takes it)
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from st_lmtx.trainer.run_state import hold_run_folder\n"
            "with hold_run_folder(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(work),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out") == 2
    finally:
        holder.kill()
        holder.wait()
    line = one_error_line(capsys)
    assert f"{tmp_path / 'out'} is in use by another st-lmtx run" in line and "another output folder" in line
    # Nothing of the run written: only the lock and the teacher's cache, which the command opened first.
    assert {p.name for p in work.iterdir() if not p.name.startswith("teacher_cache.sqlite")} == {"run.lock"}
    assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out") == 0  # the other run gone (killed): this one runs


def test_a_local_teacher_not_fetched_or_not_installed(toy_lfxmc, tiny_model_dir, tmp_path, capsys, monkeypatch):
    from st_lmtx.teacher.model_files import DEFAULT_MODEL, default_model_path

    monkeypatch.setenv("ST_LMTX_CACHE", str(tmp_path / "empty"))
    for teacher in ("local-server", "local"):
        assert judge(toy_lfxmc, tiny_model_dir, tmp_path / "c", teacher) == 2
        assert "run `st-lmtx fetch-model`" in one_error_line(capsys)
    default_model_path().parent.mkdir(parents=True)
    with open(default_model_path(), "wb") as f:  # sparse: only the size is checked before the server starts
        f.truncate(DEFAULT_MODEL.size)
    monkeypatch.setitem(sys.modules, "llama_cpp.server", None)  # the [local] extra not installed
    assert judge(toy_lfxmc, tiny_model_dir, tmp_path / "c", "local-server") == 2
    assert "pip install 'st-lmtx[local]'" in one_error_line(capsys)


def test_a_teacher_that_says_yes_to_nothing(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    # Every true label flipped to "no": no shortlisted label is a "yes".
    assert train(toy_lfxmc, tiny_model_dir, tmp_path / "out", "--teacher", "oracle:1:no") == 1
    assert "nothing to train on" in one_error_line(capsys)


def test_a_plain_model_is_not_a_tagger(tiny_model_dir, tmp_path, capsys):
    docs = tmp_path / "docs.txt"
    docs.write_text("gold prices rose\n")
    assert main(["-q", "predict", "--model", tiny_model_dir, "--input", str(docs)]) == 2
    assert "not an LMTX tagger" in one_error_line(capsys)


def test_debug_adds_the_traceback_and_keeps_the_exit_code(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    assert main(["--debug", *train_argv(toy_lfxmc, tiny_model_dir, tmp_path / "out", "--max-docs", "0")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "ArgumentsError: max_docs must be >= 1" in err
    assert err.strip().splitlines()[-1] == "st-lmtx: error: max_docs must be >= 1; got 0"


def test_the_installed_command_prints_no_traceback(tmp_path):
    bad = tmp_path / "j.jsonl"
    bad.write_text("not json\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "st_lmtx.cli", "judgments", "import", str(bad), "--cache", str(tmp_path / "c.sqlite")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("st-lmtx: error: ") and "Traceback" not in done.stderr
    assert json.dumps(done.stdout) == '""'
