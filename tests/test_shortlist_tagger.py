import gzip
import json

import numpy as np
import pytest
from conftest import TOY_DOCS, TOY_LABELS

from st_lmtx import LMTXTagger, XMCEvaluator, load_labels, load_lfxmc
from st_lmtx.cli import main as cli_main
from st_lmtx.errors import NotATaggerError
from st_lmtx.evaluation.metrics import xmc_metrics
from st_lmtx.shortlist import IndexConfig, LabelIndex, Shortlist, ShortlistMiner


def test_flat_and_hnsw_agree_on_top_k(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.normal(size=(2000, 32)).astype(np.float32)
    queries = rng.normal(size=(50, 32)).astype(np.float32)
    flat = LabelIndex.build(labels, IndexConfig(hnsw_threshold=10_000))
    hnsw = LabelIndex.build(labels, IndexConfig(hnsw_threshold=1000))
    assert (flat.kind, hnsw.kind) == ("flat", "hnsw")
    fi, fs = flat.search(queries, 10)
    hi, hs = hnsw.search(queries, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(fi, hi)])
    assert overlap > 0.95
    # exact search returns cosine similarities, best first
    normed = labels / np.linalg.norm(labels, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    np.testing.assert_allclose(fs[:, 0], (q @ normed.T).max(axis=1), rtol=1e-5)
    assert (np.diff(fs, axis=1) <= 1e-6).all()
    hnsw.save(tmp_path / "idx.faiss")
    loaded = LabelIndex.load(tmp_path / "idx.faiss")
    assert loaded.kind == "hnsw" and loaded.config.hnsw_threshold == 1000
    np.testing.assert_array_equal(loaded.search(queries, 10)[0], hi)


def test_miner_returns_k_labels_and_saves(tiny_model, tmp_path):
    labels = load_labels(TOY_LABELS)
    miner = ShortlistMiner(tiny_model, labels, show_progress_bar=False)
    sl = miner.mine([d[1] for d in TOY_DOCS], k=4)
    assert sl.indices.shape == (len(TOY_DOCS), 4) and sl.scores.shape == (len(TOY_DOCS), 4)
    assert all(len(set(row)) == 4 for row in sl.indices)
    assert miner.mine(["x"], k=50).indices.shape == (1, len(TOY_LABELS))  # k above the label count
    sl.save(tmp_path / "sl.npz")
    np.testing.assert_array_equal(Shortlist.load(tmp_path / "sl.npz").indices, sl.indices)


def test_tagger_save_load_predicts_identically(tiny_model, tmp_path):
    tagger = LMTXTagger(tiny_model, {"w": "Wheat", "o": "Crude Oil", "g": "Gold", "c": "Coffee"})
    docs = ["Wheat exports rose sharply.", "Gold and oil prices fell."]
    before = tagger.predict(docs, top_k=3)
    assert [len(t) for t in before] == [3, 3]
    assert {t.id for t in before[0]} <= {"w", "o", "g", "c"}
    assert before[0][0].text == {"w": "Wheat", "o": "Crude Oil", "g": "Gold", "c": "Coffee"}[before[0][0].id]
    tagger.save(tmp_path / "tagger")
    for name in ("lmtx_labels.jsonl", "lmtx_index.faiss", "lmtx_tagger.json", "modules.json"):
        assert (tmp_path / "tagger" / name).exists(), name
    after = LMTXTagger.load(tmp_path / "tagger").predict(docs, top_k=3)
    assert [[(t.id, t.score) for t in row] for row in after] == [[(t.id, t.score) for t in row] for row in before]


def test_tagger_load_errors(tmp_path, tiny_model):
    tiny_model.save(str(tmp_path / "plain"))
    with pytest.raises(NotATaggerError, match="plain model"):
        LMTXTagger.load(tmp_path / "plain")
    with pytest.raises(NotATaggerError, match="not a local folder"):
        LMTXTagger.load(str(tmp_path / "missing-repo"))
    assert issubclass(NotATaggerError, FileNotFoundError)  # what 0.1 raised: callers that caught it still do


def test_xmc_evaluator_matches_metrics(tiny_model, toy_lfxmc):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    evaluator = XMCEvaluator(labels, docs, k_values=(1, 3), name="toy")
    results = evaluator(tiny_model)
    assert evaluator.primary_metric == "toy_P@1"
    ranked = evaluator.rank(tiny_model)
    expected = xmc_metrics(ranked, docs.targets, (1, 3), evaluator.inv_propensities)
    assert results == {f"toy_{k}": pytest.approx(v) for k, v in expected.items()}
    with pytest.raises(ValueError, match="ground truth"):
        XMCEvaluator(labels, docs.subset([0]).__class__(texts=["x"]))


def test_cli_predict_reads_compressed_json_lines_and_refuses_text_that_is_not_utf8(
    tiny_model_dir, toy_lfxmc, tmp_path, capsys
):
    from sentence_transformers import SentenceTransformer

    labels, _ = load_lfxmc(toy_lfxmc, "tst")
    LMTXTagger(SentenceTransformer(tiny_model_dir), labels).save(tmp_path / "tagger")
    docs, out = tmp_path / "docs.JSONL.gz", tmp_path / "out.jsonl"
    with gzip.open(docs, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"id": "a", "text": "Wheat exports rose."}) + "\n")
    predict = ["-q", "predict", "--model", str(tmp_path / "tagger"), "--output", str(out), "--input"]
    assert cli_main([*predict, str(docs)]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a"]
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 prices rose.\n".encode("latin-1"))
    assert cli_main([*predict, str(tmp_path / "latin1.txt")]) == 2
    assert "latin1.txt: not UTF-8 text" in capsys.readouterr().err


def test_cli_evaluate_and_predict(tiny_model_dir, toy_lfxmc, tmp_path, capsys):
    assert (
        cli_main(["-q", "evaluate", "--data", str(toy_lfxmc), "--model", tiny_model_dir, "--k", "1,3", "--json"]) == 0
    )
    printed = json.loads(capsys.readouterr().out)
    labels, docs = load_lfxmc(toy_lfxmc, "tst")
    from sentence_transformers import SentenceTransformer

    from st_lmtx.inputs import load_documents

    train = load_documents(toy_lfxmc / "trn.json")
    direct = XMCEvaluator(labels, docs, k_values=(1, 3), train_truth=train.targets)(
        SentenceTransformer(tiny_model_dir)
    )
    assert printed["documents"] == 5
    assert printed["P@1"] == pytest.approx(round(100 * direct["P@1"], 2))
    assert printed["PSP@3"] == pytest.approx(round(100 * direct["PSP@3"], 2))

    LMTXTagger(SentenceTransformer(tiny_model_dir), labels).save(tmp_path / "tagger")
    (tmp_path / "in.txt").write_text("Wheat exports rose.\n\nGold fell.\n")
    assert (
        cli_main(
            [
                "-q",
                "predict",
                "--model",
                str(tmp_path / "tagger"),
                "--input",
                str(tmp_path / "in.txt"),
                "--top-k",
                "2",
                "--output",
                str(tmp_path / "out.jsonl"),
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == ["0", "1"]
    assert all(len(r["tags"]) == 2 and {"id", "text", "score"} <= set(r["tags"][0]) for r in lines)


def test_cli_reports_input_errors(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    (toy_lfxmc / "tst.json").write_text('{"uid": 1, "title": "x", "content": "y", "target_ind": [0]}\n{oops\n')
    assert cli_main(["-q", "evaluate", "--data", str(toy_lfxmc), "--model", tiny_model_dir]) == 2
    err = capsys.readouterr().err
    assert err.startswith("st-lmtx: error: ") and "tst.json:2: malformed JSON" in err and "Traceback" not in err
    # a plain model is not a tagger: one line, exit 2
    (tmp_path / "in.txt").write_text("Wheat exports rose.\n")
    assert cli_main(["-q", "predict", "--model", tiny_model_dir, "--input", str(tmp_path / "in.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("st-lmtx: error: ") and "it is a plain model, not an LMTX tagger" in err
    assert err.count("\n") == 1
