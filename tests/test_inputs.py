import json
import logging

import pytest
from conftest import TOY_LABELS, write_jsonl
from datasets import Dataset

from st_lmtx.errors import InputError
from st_lmtx.inputs import DocumentSet, LabelSet, load_documents, load_labels, load_lfxmc


def test_label_forms_agree(toy_lfxmc):
    from_file = load_labels(toy_lfxmc / "lbl.json")
    assert from_file.ids == [f"L{i}" for i in range(len(TOY_LABELS))]
    assert from_file.texts == TOY_LABELS
    assert load_labels(toy_lfxmc).texts == TOY_LABELS  # the folder works too
    assert load_labels(TOY_LABELS).ids == TOY_LABELS  # a list: each text is its own id
    assert load_labels({"a": "Wheat", "b": "Gold"}).ids == ["a", "b"]
    ds = load_labels(Dataset.from_dict({"id": ["x", "y"], "text": ["Wheat", "Gold"]}))
    assert (ds.ids, ds.texts) == (["x", "y"], ["Wheat", "Gold"])


def test_paths_under_the_home_folder(toy_lfxmc, monkeypatch):
    monkeypatch.setenv("HOME", str(toy_lfxmc.parent))
    assert load_labels("~/toy/lbl.json").texts == load_labels("~/toy").texts == TOY_LABELS
    assert load_documents("~/toy/trn.json").ids == load_documents(toy_lfxmc / "trn.json").ids
    labels, docs = load_lfxmc("~/toy", "tst")
    assert (len(labels), len(docs)) == (len(TOY_LABELS), 5)


def test_document_forms_agree(toy_lfxmc):
    docs = load_documents(toy_lfxmc / "trn.json", num_labels=len(TOY_LABELS))
    assert docs.texts[0] == "Wheat harvest up\nFarmers reported a strong wheat harvest and wheat exports rose."
    assert docs.ids[0] == "d0" and docs.targets[6] == [0, 5]
    as_list = load_documents(docs.texts)
    assert as_list.texts == docs.texts and as_list.targets is None
    ds = Dataset.from_dict({"title": ["A"], "content": ["b c"], "target_ind": [[1]]})
    assert load_documents(ds).texts == ["A\nb c"] and load_documents(ds).targets == [[1]]
    assert load_documents(Dataset.from_dict({"text": ["x y"]})).texts == ["x y"]


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "trn.json"
    path.write_text('{"uid": "a", "title": "t", "content": "c", "target_ind": []}\n{"uid": "b", "title": \n')
    with pytest.raises(InputError, match=r"trn\.json:2: malformed JSON"):
        load_documents(path)


def test_missing_field(tmp_path):
    path = write_jsonl(tmp_path / "lbl.json", [{"uid": "a", "title": "Wheat"}, {"uid": "b"}])
    with pytest.raises(InputError, match=r"lbl\.json:2: missing field 'text'"):
        load_labels(path)
    docs = write_jsonl(tmp_path / "trn.json", [{"uid": "a", "target_ind": [0]}])
    with pytest.raises(InputError, match=r"trn\.json:1: missing field 'text' \(or 'title' and 'content'\)"):
        load_documents(docs)


def test_empty_label_text(tmp_path):
    with pytest.raises(InputError, match=r"label 1 \(id 'b'\): empty label text"):
        load_labels({"a": "Wheat", "b": "  "})
    path = write_jsonl(tmp_path / "lbl.json", [{"uid": "a", "title": "Wheat"}, {"uid": "b", "title": " "}])
    with pytest.raises(InputError, match=r"lbl\.json:2: empty label text"):
        load_labels(path)


def test_duplicate_label_id(tmp_path):
    path = write_jsonl(tmp_path / "lbl.json", [{"uid": "a", "title": "Wheat"}, {"uid": "a", "title": "Gold"}])
    with pytest.raises(InputError, match=r"duplicate label id\(s\): 'a'"):
        load_labels(path)
    with pytest.raises(InputError, match="duplicate label id"):
        load_labels(["Wheat", "Gold", "Wheat"])


def test_duplicate_label_texts_warn_by_name(caplog):
    with caplog.at_level(logging.WARNING, logger="st_lmtx.inputs"):
        labels = load_labels({"a": "Wheat", "b": "Gold", "c": "Wheat"})
    assert len(labels) == 3
    assert "'Wheat'" in caplog.text and "identical embeddings" in caplog.text


def test_non_string_text(tmp_path):
    with pytest.raises(InputError, match=r"document 1: text is int, not a string"):
        load_documents(["fine", 3])
    with pytest.raises(InputError, match=r"label 0: text is NoneType"):
        load_labels([None])
    path = write_jsonl(tmp_path / "lbl.json", [{"uid": "a", "title": 3}])
    with pytest.raises(InputError, match=r"lbl\.json:1: text is int, not a string"):
        load_labels(path)
    with pytest.raises(InputError, match=r"field 'content' is int"):
        load_documents(Dataset.from_dict({"title": ["a"], "content": [5]}))


def test_empty_document():
    with pytest.raises(InputError, match=r"document 1 \(id '1'\): empty document text"):
        DocumentSet(texts=["fine", "   "])


def test_target_out_of_range(tmp_path, toy_lfxmc):
    records = [json.loads(line) for line in (toy_lfxmc / "trn.json").read_text().splitlines()]
    records[3]["target_ind"] = [0, 6]
    write_jsonl(toy_lfxmc / "trn.json", records)
    with pytest.raises(InputError, match=r"document 3 \(id 'd3'\): target_ind 6 is out of range for 6 labels"):
        load_lfxmc(toy_lfxmc, "trn")
    records[3]["target_ind"] = ["0"]
    write_jsonl(toy_lfxmc / "trn.json", records)
    with pytest.raises(InputError, match=r"target_ind '0' is a str, not a label index"):
        load_lfxmc(toy_lfxmc, "trn")


def test_empty_document_list(tmp_path):
    with pytest.raises(InputError, match="the document list is empty"):
        load_documents([])
    (tmp_path / "trn.json").write_text("\n")
    with pytest.raises(InputError, match="the document list is empty"):
        load_documents(tmp_path / "trn.json")


def test_missing_file_and_split(tmp_path, toy_lfxmc):
    with pytest.raises(InputError, match="does not exist"):
        load_documents(tmp_path / "nope.json")
    with pytest.raises(InputError, match=r"dev\.json does not exist \(splits here: trn, tst\)"):
        load_lfxmc(toy_lfxmc, "dev")


def test_json_nested_too_deeply(tmp_path):
    (tmp_path / "lbl.json").write_text('{"title": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(InputError, match=r"lbl\.json:1: malformed JSON \(nested too deeply\)"):
        load_labels(tmp_path / "lbl.json")


def test_subset_keeps_alignment(toy_lfxmc):
    docs = load_documents(toy_lfxmc / "trn.json")
    sub = docs.subset([6, 1])
    assert sub.ids == ["d6", "d1"] and sub.targets == [[0, 5], [1]]
    labels = LabelSet(["a"], ["A"])
    assert load_labels(labels) is labels
