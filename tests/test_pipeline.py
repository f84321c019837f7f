"""The public pipeline pieces: mine_shortlists -> judge_shortlists -> build_lmtx_dataset /
build_distillation_dataset, each alone (a tiny model, the oracle, the fake server), and the trainer running its
rounds through exactly these functions."""

import math

import numpy as np
import pytest
from conftest import TOY_DOCS, TOY_LABELS
from datasets import Dataset
from fake_openai_server import relevant

from st_lmtx import (
    LMTXArguments,
    LMTXTrainer,
    OpenAITeacher,
    OracleTeacher,
    build_distillation_dataset,
    build_lmtx_dataset,
    judge_shortlists,
    load_documents,
    load_labels,
    mine_shortlists,
)
from st_lmtx.shortlist import Shortlist, ShortlistMiner

LABELS = load_labels(TOY_LABELS)
DOCS = load_documents(
    Dataset.from_dict({"text": [f"{t}. {c}" for t, c, _ in TOY_DOCS], "target_ind": [y for *_, y in TOY_DOCS]})
)


@pytest.fixture()
def shortlists(tiny_model):
    return mine_shortlists(tiny_model, LABELS, DOCS, k=3, show_progress_bar=False)


def test_mine_shortlists_gives_each_document_its_ranked_labels(tiny_model, shortlists):
    assert shortlists.column_names == ["document_id", "document", "labels", "label_indices", "similarities"]
    assert len(shortlists) == len(DOCS) and shortlists["document"] == DOCS.texts
    miner = ShortlistMiner(tiny_model, LABELS, show_progress_bar=False).mine(DOCS.texts, k=3)
    for row, ids, sims in zip(shortlists, miner.indices, miner.scores):
        assert row["label_indices"] == ids.tolist() and row["labels"] == [TOY_LABELS[j] for j in ids]
        assert np.allclose(row["similarities"], sims) and row["similarities"] == sorted(row["similarities"])[::-1]
    again = Shortlist.from_dataset(shortlists)  # what a round folder saves
    assert (again.indices == miner.indices).all()
    with pytest.raises(ValueError, match="k must be"):
        mine_shortlists(tiny_model, LABELS, DOCS, k=0)


def test_judge_shortlists_with_the_oracle_its_cache_and_a_budget(shortlists, tmp_path):
    teacher = OracleTeacher(LABELS, DOCS, cache=tmp_path / "c.sqlite")
    judged = judge_shortlists(teacher, shortlists)
    assert judged.column_names[-2:] == ["verdicts", "p_yes"]
    for i, row in enumerate(judged):
        truth = set(DOCS.targets[i])
        assert row["verdicts"] == ["yes" if j in truth else "no" for j in row["label_indices"]]
        assert row["p_yes"] == [1.0 if j in truth else 0.0 for j in row["label_indices"]]
    asked = teacher.usage.pairs - teacher.usage.cache_hits
    assert asked == sum(len(row) for row in shortlists["labels"])
    assert judge_shortlists(teacher, judged)["verdicts"] == judged["verdicts"]  # judged again: from the cache
    assert teacher.usage.pairs - teacher.usage.cache_hits == asked  # no pair asked twice
    # A budget of 10 new pairs and stop_at: the pairs not reached are None.
    budgeted = OracleTeacher(LABELS, DOCS, budget=10)
    partial = judge_shortlists(budgeted, shortlists, stop_at=10)
    flat = [v for row in partial["verdicts"] for v in row]
    assert 0 < flat.count(None) < len(flat) and len(flat) - flat.count(None) <= 10
    with pytest.raises(ValueError, match="'document' and 'labels'"):
        judge_shortlists(teacher, shortlists.remove_columns("labels"))


def test_judge_shortlists_through_an_endpoint_gives_graded_scores(shortlists, fake_server):
    teacher = OpenAITeacher("fake", base_url=fake_server.url, show_progress_bar=False)
    judged = judge_shortlists(teacher, shortlists)
    for row in judged:
        assert row["verdicts"] == ["yes" if relevant(row["document"], x) else "no" for x in row["labels"]]
        assert all(0 < p < 1 for p in row["p_yes"])  # graded: probabilities, not 1.0 / 0.0
        assert all((p > 0.5) == (v == "yes") for p, v in zip(row["p_yes"], row["verdicts"]))


def judged_rows() -> Dataset:
    return Dataset.from_dict(
        {
            "document": ["wheat by ship", "oil", "nothing"],
            "labels": [["Wheat", "Shipping", "Gold"], ["Crude Oil", "Gold", "Coffee"], ["Gold", "Coffee", "Wheat"]],
            "label_indices": [[0, 5, 3], [1, 3, 4], [3, 4, 0]],
            "verdicts": [["yes", "yes", "no"], ["yes", "no", None], ["no", "no", "no"]],
            "p_yes": [[0.7, 0.9, 0.1], [0.8, 0.2, None], [0.1, 0.2, 0.3]],
        }
    )


def test_build_lmtx_dataset_trains_the_top_yes_and_masks_every_yes():
    rows = build_lmtx_dataset(judged_rows())
    assert rows.column_names == ["anchor", "positive", "label"]
    assert rows["anchor"] == ["wheat by ship", "oil"]  # the document with no "yes" sits out
    assert rows["positive"] == ["Shipping", "Crude Oil"]  # the "yes" scored highest, not the first
    assert rows["label"] == [[5, 0, 5], [1, 1, -1]]  # the positive, then every "yes" (never a negative)
    drawn = build_lmtx_dataset(judged_rows(), positives="random-yes", epochs=50, seed=1)
    assert set(drawn["positive"]) == {"Wheat", "Shipping", "Crude Oil"} and len(drawn) == 100


def test_build_distillation_dataset_gives_the_teachers_scores_and_trains(tiny_model, tmp_path):
    rows = build_distillation_dataset(judged_rows())
    assert rows.column_names == ["anchor", "label_1", "label_2", "label_3", "label"]
    assert rows["anchor"] == ["wheat by ship", "nothing"]  # "oil" has an unjudged pair: left out at k=3
    assert rows["label_2"] == ["Shipping", "Coffee"]
    assert np.allclose(rows["label"][0], [math.log(0.7), math.log(0.9), math.log(0.1)])
    assert len(build_distillation_dataset(judged_rows(), k=2)) == 3
    # sentence-transformers' DistillKLDivLoss trains on the rows as they are
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss

    before = [p.detach().clone() for p in tiny_model.parameters()]
    training_args = SentenceTransformerTrainingArguments(
        tmp_path / "out", per_device_train_batch_size=2, max_steps=2, report_to="none", save_strategy="no"
    )
    loss = DistillKLDivLoss(tiny_model, student_temperature=0.05)
    SentenceTransformerTrainer(tiny_model, training_args, train_dataset=rows, loss=loss).train()
    assert any(not b.equal(p) for b, p in zip(before, tiny_model.parameters()))


def test_the_trainer_runs_its_rounds_through_the_public_pieces(tiny_model_dir, toy_lfxmc, tmp_path, monkeypatch):
    import st_lmtx.trainer.curriculum as curriculum

    called = []
    for name in ("mine_shortlists", "judge_shortlists", "build_lmtx_dataset"):
        real = getattr(curriculum, name)
        monkeypatch.setattr(
            curriculum, name, lambda *a, _real=real, _name=name, **kw: called.append(_name) or _real(*a, **kw)
        )
    labels = load_labels(toy_lfxmc)
    docs = load_documents(toy_lfxmc / "trn.json")
    args = LMTXArguments(
        output_dir=str(tmp_path / "run"), max_rounds=2, patience=2, dev_size=4, batch_size=4, show_progress_bar=False
    )
    LMTXTrainer(tiny_model_dir, labels, teacher=OracleTeacher(labels, docs), args=args).fit(docs)
    assert called == ["mine_shortlists", "judge_shortlists", "build_lmtx_dataset"] * 2
