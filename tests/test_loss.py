import math

import pytest
import torch
from conftest import TOY_DOCS, TOY_LABELS
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

from st_lmtx import LMTXTripletLoss


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# Anchors and positives in 2-D; cosines are read off by hand:
#   cos(a0,p0)=.8 cos(a0,p1)=.6 cos(a0,p2)=0
#   cos(a1,p0)=.6 cos(a1,p1)=.8 cos(a1,p2)=1
#   cos(a2,p0)=.96 cos(a2,p1)=1 cos(a2,p2)=.8
ANCHORS = t([1, 0], [0, 1], [0.6, 0.8])
POSITIVES = t([0.8, 0.6], [0.6, 0.8], [0, 1])


@pytest.fixture()
def loss_fn(tiny_model):
    return lambda **kw: LMTXTripletLoss(tiny_model, **kw)


def test_hand_computed_value(loss_fn):
    loss = loss_fn(margin=0.3, num_negatives=1)
    # hardest negatives: row0 p1 (.6 - .8 + .3 = .1), row1 p2 (1 - .8 + .3 = .5), row2 p1 (1 - .8 + .3 = .5)
    value = loss.compute_loss_from_embeddings([ANCHORS, POSITIVES], None)
    assert value.item() == pytest.approx((0.1 + 0.5 + 0.5) / 3, abs=1e-6)
    # the default averages over num_negatives=10 slots: each row has 2 candidates
    # row0: .1 + max(0, 0 - .8 + .3)=0 ; row1: .5 + (.6-.8+.3=.1) ; row2: .5 + (.96-.8+.3=.46)
    value = loss_fn().compute_loss_from_embeddings([ANCHORS, POSITIVES], None)
    assert value.item() == pytest.approx(((0.1) + (0.5 + 0.1) + (0.5 + 0.46)) / 10 / 3, abs=1e-6)


def test_known_positive_is_not_a_negative(loss_fn):
    loss = loss_fn(margin=0.3, num_negatives=1)
    # label ids 10, 11, 12; document 1 also has label 12 among its "yes" labels
    labels = torch.tensor([[10, -1], [11, 12], [12, -1]])
    value = loss.compute_loss_from_embeddings([ANCHORS, POSITIVES], labels)
    # row1 can no longer use p2 (cos 1.0): its hardest negative is p0 (.6) -> .1
    assert value.item() == pytest.approx((0.1 + 0.1 + 0.5) / 3, abs=1e-6)
    invalid = loss._invalid_negatives(3, 1, labels, torch.device("cpu"))
    assert invalid.tolist() == [[True, False, False], [False, True, True], [False, False, True]]


def test_repeated_label_counts_once(loss_fn):
    anchors = t([1, 0], [0, 1], [0, 1])
    positives = t([0.8, 0.6], [0.6, 0.8], [0.6, 0.8])  # rows 1 and 2 share label 11
    labels = torch.tensor([[10], [11], [11]])
    dedup = loss_fn(num_negatives=2).compute_loss_from_embeddings([anchors, positives], labels)
    # every row keeps one distinct negative with hinge .1, weighted 1/2
    assert dedup.item() == pytest.approx(0.05, abs=1e-6)
    copies = loss_fn(num_negatives=2, deduplicate_labels=False).compute_loss_from_embeddings(
        [anchors, positives], labels
    )
    # row0 counts label 11 twice: (.1 + .1) / 2; rows 1 and 2 still mask their own label 11
    assert copies.item() == pytest.approx((0.1 + 0.05 + 0.05) / 3, abs=1e-6)


def test_softmax_weighting(loss_fn):
    loss = loss_fn(num_negatives=2, softmax_weighting=True, temperature=0.1)
    value = loss.compute_loss_from_embeddings([ANCHORS, POSITIVES], None)
    # row0: one violator (.1) -> weight 1; row1: violators 1.0 (.5) and .6 (.1); row2: 1.0 (.5) and .96 (.46)
    w1 = math.exp(10) / (math.exp(10) + math.exp(6))
    w2 = math.exp(10) / (math.exp(10) + math.exp(9.6))
    expected = (0.1 + (w1 * 0.5 + (1 - w1) * 0.1) + (w2 * 0.5 + (1 - w2) * 0.46)) / 3
    assert value.item() == pytest.approx(expected, abs=1e-5)


def test_hard_negative_column_joins_the_candidates(loss_fn):
    negatives = t([1, 0], [0.8, 0.6], [1, 0])
    labels = torch.tensor([[10, 20, -1], [11, 21, -1], [12, 22, -1]])
    value = loss_fn(num_negatives=1).compute_loss_from_embeddings([ANCHORS, POSITIVES, negatives], labels)
    # row0's hardest is its own hard negative (1.0): 1 - .8 + .3 = .5; row1: p2 (1.0) -> .5; row2: p1 (1.0) -> .5
    assert value.item() == pytest.approx(0.5, abs=1e-6)


def test_config_citation_and_bad_arguments(loss_fn):
    loss = loss_fn(margin=0.2, num_negatives=5, softmax_weighting=True)
    assert loss.get_config_dict() == {
        "margin": 0.2,
        "num_negatives": 5,
        "softmax_weighting": True,
        "temperature": 0.1,
        "deduplicate_labels": True,
    }
    assert "2406.09288" in loss.citation and "Zhang" in loss.citation
    with pytest.raises(ValueError, match="num_negatives must be >= 1"):
        loss_fn(num_negatives=0)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        loss_fn(margin=-0.1)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        loss_fn(temperature=0)
    with pytest.raises(ValueError, match=r"labels must be"):
        loss.compute_loss_from_embeddings([ANCHORS, POSITIVES, POSITIVES], torch.tensor([[1], [2], [3]]))


def test_loss_goes_down_in_sentence_transformer_trainer(tiny_model, tmp_path):
    docs = [f"{title}. {content}" for title, content, _ in TOY_DOCS]
    rows = {"anchor": [], "positive": [], "label": []}
    for doc, (_, _, targets) in zip(docs, TOY_DOCS):
        rows["anchor"].append(doc)
        rows["positive"].append(TOY_LABELS[targets[0]])
        rows["label"].append([targets[0]] + targets + [-1] * (2 - len(targets)))
    dataset = Dataset.from_dict(rows)
    loss = LMTXTripletLoss(tiny_model, margin=0.3, num_negatives=3)

    def current_loss() -> float:
        features = [tiny_model.preprocess(rows["anchor"]), tiny_model.preprocess(rows["positive"])]
        with torch.no_grad():
            return loss(features, torch.tensor(rows["label"])).item()

    before = current_loss()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=15,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        use_cpu=True,
    )
    SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=dataset, loss=loss).train()
    tiny_model.eval()
    after = current_loss()
    assert before > 0.01
    assert after < 0.5 * before, (before, after)
