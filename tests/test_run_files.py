"""Broken run files (a crash or a full disk mid-write, a disk error): a clear error naming the file and how to
recover, or an automatic recovery; never a silent wrong result. Files are written atomically."""

import shutil

import pytest
from test_trainer import args, asked, endpoint_teacher

from st_lmtx import LMTXTrainer, OracleTeacher, RunFileError, RunRecord, load_lfxmc
from st_lmtx.errors import CacheFileError
from st_lmtx.files import atomic_path, atomic_write_text
from st_lmtx.teacher import JudgmentCache


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def fit(model_dir, labels, docs, out, teacher=None, **kw):
    teacher = teacher or OracleTeacher(labels, docs)
    return LMTXTrainer(model_dir, labels, teacher=teacher, args=args(out, **kw)).fit(docs)


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_text(path, "old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_text("half of the new")
            raise OSError("disk full")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]
    folder = tmp_path / "model"
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        (tmp / "weights").write_text("v1")
    with atomic_path(folder) as tmp:  # a folder replaces a folder
        tmp.mkdir()
        (tmp / "weights").write_text("v2")
    assert (folder / "weights").read_text() == "v2" and sorted(p.name for p in tmp_path.iterdir()) == [
        "model",
        "state.json",
    ]


def test_a_broken_state_file_is_named_with_the_way_out(tiny_model_dir, toy_lfxmc, fake_server, tmp_path):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    out = tmp_path / "run"
    fit(tiny_model_dir, labels, docs, out, teacher=endpoint_teacher(fake_server, out), max_rounds=1)
    state = out / "lmtx-work" / "state.json"
    truncate(state)
    with pytest.raises(RunFileError, match=r"state\.json is not a readable LMTX run record.*delete state\.json"):
        fit(tiny_model_dir, labels, docs, out, teacher=endpoint_teacher(fake_server, out), max_rounds=1)
    # The way out it gives: the run starts over and the teacher's cache answers everything.
    calls = len(fake_server.log)
    state.unlink()
    fit(tiny_model_dir, labels, docs, out, teacher=endpoint_teacher(fake_server, out), max_rounds=1)
    assert len(fake_server.log) == calls and RunRecord.read(state).finished


def test_a_broken_shortlist_or_pseudo_label_file_is_rebuilt(tiny_model_dir, toy_lfxmc, fake_server, tmp_path):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    out = tmp_path / "run"
    kw = dict(accumulate_judgments=True, patience=5)
    fit(tiny_model_dir, labels, docs, out, teacher=endpoint_teacher(fake_server, out), max_rounds=1, **kw)
    round1 = out / "lmtx-work" / "round-01"
    shortlist, pseudo = (round1 / "shortlist.npz").read_bytes(), (round1 / "pseudo_labels.jsonl").read_bytes()
    truncate(round1 / "shortlist.npz")
    truncate(round1 / "pseudo_labels.jsonl")
    # Round 2 merges round 1's pseudo-labels: rebuilt from round 1's shortlist (mined again) and the cache.
    fit(tiny_model_dir, labels, docs, out, teacher=endpoint_teacher(fake_server, out), max_rounds=2, **kw)
    assert (round1 / "shortlist.npz").read_bytes() == shortlist
    assert (round1 / "pseudo_labels.jsonl").read_bytes() == pseudo
    assert (out / "lmtx-work" / "round-02" / "metrics.json").exists()
    assert max(asked(fake_server).values()) == 1  # the rebuild asked the cache, not the teacher


def test_a_broken_round_model_is_named_and_deleting_the_round_redoes_it(tiny_model_dir, toy_lfxmc, tmp_path):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    out = tmp_path / "run"
    fit(tiny_model_dir, labels, docs, out, max_rounds=1, restart_from_base=False)
    round1 = out / "lmtx-work" / "round-01"
    truncate(round1 / "model" / "model.safetensors")
    with pytest.raises(RunFileError, match=r"round-01/model is unreadable.*delete .*round-01 and run fit again"):
        fit(tiny_model_dir, labels, docs, out, max_rounds=2, restart_from_base=False)
    shutil.rmtree(round1)
    fit(tiny_model_dir, labels, docs, out, max_rounds=2, restart_from_base=False)
    state = RunRecord.read(out / "lmtx-work" / "state.json")
    assert [r.round for r in state.rounds] == [0, 1, 2] and (round1 / "model" / "model.safetensors").exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_broken_cache_is_named_with_the_way_out(damage, tmp_path):
    path = tmp_path / "cache.sqlite"
    with JudgmentCache(path) as cache:
        ns = cache.register({"backend": "test"})
        for i in range(3000):
            cache.put(ns, f"document {i} " * 20, f"label {i}", "yes", 0.9, True, "yes", 10, 1)
    assert path.stat().st_size > 100_000
    if damage == "garbage":
        path.write_bytes(b"not a database " * 1000)
    else:
        truncate(path, 0.6)
    with pytest.raises(CacheFileError, match=r"cache\.sqlite is not a readable judgment cache.*\.recover"):
        JudgmentCache(path)
