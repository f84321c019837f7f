"""LMTX inside a sentence-transformers training script you already have: its data as a second dataset.

What it shows: an ordinary `SentenceTransformerTrainer` script (its own small labelled pairs and
MultipleNegativesRankingLoss) that adds LMTX data built from unlabeled documents: `mine_shortlists` (each
document's nearest labels under the model), `judge_shortlists` (the teacher's verdicts, cached under --output) and
`build_lmtx_dataset` (rows for `LMTXTripletLoss`), trained together through sentence-transformers' multi-dataset
training (a `DatasetDict`, a loss per dataset), measured with `XMCEvaluator`, and saved as a tagger that
`LMTXTagger.load` opens. These are the functions `LMTXTrainer` runs its rounds with.

    python examples/07_existing_pipeline.py                       # the embedded local teacher
    python examples/07_existing_pipeline.py --teacher http://127.0.0.1:8000/v1

Time on this 2-core CPU: 3.5 minutes with the embedded local teacher for the default 40 documents x 5 labels (the
200 pairs took 2 min 35 s; the rest, 45 s, is also what a rerun takes: it asks the teacher nothing). Measured on the
first 300 test documents: P@1 49.33 before -> 63.67 after (P@5 18.00 -> 19.27).
Data: an LF-XMC folder (--data, else $LMTX_DATA, else ../shared/data/reuters21578); its training documents'
labels are never read (the oracle teacher, for tests, reads them).
"""

import argparse
import os
from pathlib import Path

from datasets import Dataset, DatasetDict
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from st_lmtx import (
    LMTXTagger,
    LMTXTripletLoss,
    XMCEvaluator,
    build_lmtx_dataset,
    judge_shortlists,
    load_lfxmc,
    mine_shortlists,
)
from st_lmtx.models import load_model
from st_lmtx.teacher import make_teacher

# The script's own labelled data: a handful of (text, paraphrase) pairs, as any existing pipeline has.
OWN_PAIRS = [
    ("The central bank lifted its key lending rate.", "Interest rates went up."),
    ("Crude futures fell on rising inventories.", "Oil prices dropped."),
    ("The company agreed to buy its rival for cash.", "An acquisition was announced."),
    ("Quarterly profit beat analysts' forecasts.", "Earnings were better than expected."),
    ("Exports of grain to Asia rose sharply.", "Wheat shipments increased."),
    ("The currency weakened against the dollar.", "The exchange rate fell."),
    ("Gold hit a six-month high.", "Bullion prices rallied."),
    ("The trade deficit widened in March.", "Imports outpaced exports."),
]


def main(argv=None):
    p = argparse.ArgumentParser(description="add LMTX data to a sentence-transformers training script")
    p.add_argument("--data", default=os.environ.get("LMTX_DATA", "../shared/data/reuters21578"))
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2", help="the bi-encoder to train")
    p.add_argument("--teacher", default="local", help="local, an OpenAI-compatible URL, or oracle (tests only)")
    p.add_argument("--max-docs", type=int, default=40, help="unlabeled documents the teacher judges")
    p.add_argument("--k", type=int, default=5, help="shortlisted labels a document")
    p.add_argument("--eval-docs", type=int, default=300, help="test documents to measure on")
    p.add_argument("--output", default="runs/existing-pipeline")
    args = p.parse_args(argv)

    labels, train = load_lfxmc(args.data, "trn")
    _, test = load_lfxmc(args.data, "tst")
    unlabeled = train.subset(range(min(args.max_docs, len(train))))
    test = test.subset(range(min(args.eval_docs, len(test))))
    model = load_model(args.model)  # a Hub name or a local folder

    # LMTX data from unlabeled documents: shortlist, judge, build the loss's rows.
    shortlists = mine_shortlists(model, labels, unlabeled, k=args.k)
    cache = Path(args.output) / "teacher_cache.sqlite"
    with make_teacher(args.teacher, labels=labels, documents=train, cache=cache) as teacher:
        judged = judge_shortlists(teacher, shortlists)
    lmtx_rows = build_lmtx_dataset(judged)  # anchor, positive, label (the "yes" labels, masked as negatives)
    print(f"LMTX rows: {len(lmtx_rows)} of {len(unlabeled)} documents had a 'yes' among their {args.k} labels")

    own = Dataset.from_dict({"anchor": [a for a, _ in OWN_PAIRS], "positive": [b for _, b in OWN_PAIRS]})
    train_dataset = DatasetDict({"own": own, "lmtx": lmtx_rows})
    loss = {"own": MultipleNegativesRankingLoss(model), "lmtx": LMTXTripletLoss(model)}
    evaluator = XMCEvaluator(labels, test, k_values=(1, 5), name="test")
    before = evaluator(model)

    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(args.output) / "checkpoints"),
        num_train_epochs=1,
        per_device_train_batch_size=8,
        learning_rate=2e-5,
        warmup_steps=0.1,
        save_strategy="no",
        report_to="none",
        seed=42,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=train_dataset, loss=loss, evaluator=evaluator
    )
    trainer.train()
    after = evaluator(model)
    for name, metrics in (("before", before), ("after", after)):
        print(f"  {name:<7} test P@1 {100 * metrics['test_P@1']:6.2f}  P@5 {100 * metrics['test_P@5']:6.2f}")

    LMTXTagger(model, labels).save(args.output)  # the model, the label set and its index: no LLM from here on
    tagger = LMTXTagger.load(args.output)
    texts = ["The Fed raised interest rates again.", "Wheat exports to Egypt rose."]
    for text, tags in zip(texts, tagger.predict(texts, top_k=3)):
        print(f"{text!r}: " + ", ".join(f"{t.text} ({t.score:.2f})" for t in tags))
    return {
        "rows": {"own": len(own), "lmtx": len(lmtx_rows)},
        "before": before,
        "after": after,
        "judged": judged,
        "model": model,
    }


if __name__ == "__main__":
    main()
