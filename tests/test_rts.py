"""RTS (Random Text Segments): the segment pairs, and the warm start of an LMTX run."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from st_lmtx import LMTXArguments, LMTXTrainer, OracleTeacher, load_lfxmc
from st_lmtx.rts import RTSConfig, rts_pairs, rts_sample

WORDS = [f"w{i}" for i in range(60)]
TEXTS = [
    " ".join(WORDS),  # 60 words
    " ".join(WORDS[:12]),  # 12 words
    "too short to cut",  # 4 words
    " ".join(WORDS[:5]),  # exactly min_words: one span only
    "a a a a a a",  # 6 words, every span the same text
    "",
]


def is_span(segment: str, text: str) -> bool:
    words, seg = text.split(), segment.split()
    return any(words[i : i + len(seg)] == seg for i in range(len(words) - len(seg) + 1))


def test_segments_are_spans_of_their_document_within_the_length_bounds():
    config = RTSConfig(min_words=5, max_words=10, pairs_per_document=3, seed=1)
    sample = rts_sample(TEXTS, config)
    # 4 words, exactly min_words (a single span) and empty: too short for two segments
    assert sample.skipped_documents == 3
    assert len(sample) == 3 * 3
    sources = [TEXTS[0]] * 3 + [TEXTS[1]] * 3 + [TEXTS[4]] * 3
    for anchor, positive, source in zip(sample.anchors, sample.positives, sources):
        for segment in (anchor, positive):
            assert is_span(segment, source), (segment, source)
            assert 5 <= len(segment.split()) <= 10
    # a pair is two different texts (the repetitive document too: a span of 5 words and one of 6)
    assert all(a != p for a, p in zip(sample.anchors, sample.positives))
    # ... unless the document has no two different spans
    alike = rts_sample(["a a a a a a"], RTSConfig(min_words=5, max_words=5))
    assert (alike.anchors, alike.positives, alike.skipped_documents) == (["a a a a a"], ["a a a a a"], 0)

    dataset = rts_pairs(TEXTS, config)
    assert dataset.column_names == ["anchor", "positive"] and len(dataset) == 9
    assert dataset["anchor"] == sample.anchors and dataset["positive"] == sample.positives


def test_pairs_are_deterministic_per_seed():
    texts = [" ".join(WORDS[i:]) for i in range(0, 40, 4)]
    one = rts_pairs(texts, RTSConfig(seed=3)).to_dict()
    assert one == rts_pairs(texts, RTSConfig(seed=3)).to_dict()
    assert one != rts_pairs(texts, RTSConfig(seed=4)).to_dict()
    lengths = {len(s.split()) for s in one["anchor"] + one["positive"]}
    assert min(lengths) >= 8 and max(lengths) <= 32 and len(lengths) > 1


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="min_words <= max_words"):
        RTSConfig(min_words=10, max_words=5)
    with pytest.raises(ValueError, match="pairs_per_document"):
        RTSConfig(pairs_per_document=0)
    with pytest.raises(ValueError, match="warm_start must be one of"):
        LMTXArguments(output_dir=str(tmp_path), warm_start="simcse")
    with pytest.raises(ValueError, match="rts_segment_words"):
        LMTXArguments(output_dir=str(tmp_path), rts_segment_words=(8,))
    with pytest.raises(ValueError, match="rts_segment_words"):
        LMTXArguments(output_dir=str(tmp_path), rts_segment_words=(0, 4))
    a = LMTXArguments(output_dir=str(tmp_path), warm_start="rts", rts_segment_words=[2, 6])
    assert a.rts_segment_words == (2, 6) and a.run_defining()["warm_start"] == "rts"
    assert LMTXArguments().warm_start == "none" and LMTXArguments().rts_segment_words == (8, 32)


def args(out, **kw):
    # The toy documents have 8-12 words: segments of 3-6 words.
    base = dict(output_dir=str(out), max_rounds=1, dev_size=4, batch_size=4, warmup_steps=0, learning_rate=1e-3,
                shortlist_k=3, show_progress_bar=False, patience=5, warm_start="rts",
                rts_segment_words=(3, 6))  # fmt: skip
    base.update(kw)
    return LMTXArguments(**base)


def test_fit_warm_starts_the_base_model_once(tiny_model_dir, toy_lfxmc, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    import st_lmtx.trainer.lmtx_trainer as trainer_module

    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    out = tmp_path / "run"
    trained = []
    real_train_round = trainer_module.train_round

    def counting_train_round(model, dataset, *a, **kw):
        trained.append(dataset.column_names)
        return real_train_round(model, dataset, *a, **kw)

    monkeypatch.setattr(trainer_module, "train_round", counting_train_round)
    given = SentenceTransformer(tiny_model_dir, device="cpu")
    before = given.encode(["Gold prices rallied."])
    LMTXTrainer(given, labels, teacher=OracleTeacher(labels, docs), args=args(out)).fit(docs)
    # one RTS pass (no label column), then round 1 (pseudo-labels with their label ids)
    assert trained == [["anchor", "positive"], ["anchor", "positive", "label"]]
    assert np.allclose(given.encode(["Gold prices rallied."]), before)  # the caller's model was not trained

    state_path = out / "lmtx-work" / "state.json"
    state = json.loads(state_path.read_text())
    warm = state["rounds"][0]["warm_start"]
    assert warm["method"] == "rts" and warm["pairs"] == len(docs) and warm["skipped_documents"] == 0
    assert warm["segment_words"] == [3, 6] and warm["seconds"] > 0
    assert "warm_start" not in state["rounds"][1]
    base = SentenceTransformer(str(out / "lmtx-work" / "base-model"), device="cpu")
    assert not np.allclose(base.encode(["Gold prices rallied."]), before, atol=1e-4)
    assert not (out / "lmtx-work" / "warm-start").exists()

    # Resuming the finished run (and going on for a round more) trains no RTS again.
    trained.clear()
    LMTXTrainer(given, labels, teacher=OracleTeacher(labels, docs), args=args(out, max_rounds=2)).fit(docs)
    assert trained == [["anchor", "positive", "label"]]
    again = json.loads(state_path.read_text())
    assert again["rounds"][0] == state["rounds"][0] and len(again["rounds"]) == 3
    assert np.allclose(SentenceTransformer(str(out / "lmtx-work" / "base-model"), device="cpu")
                       .encode(["Gold prices rallied."]), base.encode(["Gold prices rallied."]))  # fmt: skip

    # A warm start is run-defining.
    with pytest.raises(RuntimeError, match=r"args \(warm_start\)"):
        LMTXTrainer(given, labels, teacher=OracleTeacher(labels, docs), args=args(out, warm_start="none")).fit(docs)


def test_runs_from_before_the_warm_start_resume_and_no_warm_start_changes_nothing(tiny_model_dir, toy_lfxmc,
                                                                                   tmp_path):  # fmt: skip
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    out = tmp_path / "run"
    plain = args(out, warm_start="none")
    LMTXTrainer(tiny_model_dir, labels, teacher=OracleTeacher(labels, docs), args=plain).fit(docs)
    assert not (out / "lmtx-work" / "base-model" / "lmtx_warm_start.json").exists()
    state_path = out / "lmtx-work" / "state.json"
    state = json.loads(state_path.read_text())
    assert "warm_start" not in state["rounds"][0]
    for name in ("warm_start", "rts_segment_words"):  # as written by a version without the settings
        del state["fingerprint"]["args"][name]
    state_path.write_text(json.dumps(state))
    LMTXTrainer(tiny_model_dir, labels, teacher=OracleTeacher(labels, docs), args=args(out, warm_start="none",
                rts_segment_words=(8, 32))).fit(docs)  # fmt: skip
    with pytest.raises(RuntimeError, match=r"args \(warm_start\)"):
        LMTXTrainer(tiny_model_dir, labels, teacher=OracleTeacher(labels, docs), args=args(out)).fit(docs)


def test_documents_too_short_for_any_pair_stop_the_run_clearly(tiny_model_dir, toy_lfxmc, tmp_path):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="lower rts_segment_words"):
        LMTXTrainer(tiny_model_dir, labels, teacher=OracleTeacher(labels, docs),
                    args=args(out, rts_segment_words=(40, 50))).fit(docs)  # fmt: skip
    assert not (out / "lmtx-work" / "base-model").exists()


SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from st_lmtx import LMTXArguments, LMTXTrainer, OracleTeacher, load_lfxmc

    data, model_dir, out = sys.argv[1:4]
    labels, docs = load_lfxmc(data, "trn")
    args = LMTXArguments(output_dir=out, max_rounds=1, dev_size=4, batch_size=4, warmup_steps=0,
                         learning_rate=1e-3, shortlist_k=3, show_progress_bar=False, patience=5,
                         warm_start="rts", rts_segment_words=(3, 6))
    model = LMTXTrainer(model_dir, labels, teacher=OracleTeacher(labels, docs), args=args).fit(docs)
    rank = int(os.environ.get("RANK", "0"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"embedding": model.encode(["Gold prices rallied."]).tolist()}, f)
    """
)


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_processes_warm_start_together(tiny_model_dir, toy_lfxmc, tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "two"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(toy_lfxmc),
                           tiny_model_dir, str(out)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert np.allclose(rank0["embedding"], rank1["embedding"], atol=1e-6)
    warm = json.loads((out / "lmtx-work" / "state.json").read_text())["rounds"][0]["warm_start"]
    assert warm["pairs"] == 8
