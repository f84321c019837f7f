"""Evaluate a saved tagger on Reuters-21578's test split and tag new documents with it. No LLM is involved.

What it shows: `LMTXTagger.load` (a folder written by LMTXTrainer or LMTXTagger.save, or a Hub id),
`tagger.predict` on the test documents (written as JSON lines) and on new texts, and `xmc_metrics` (P@k, R@k,
nDCG@k, PSP@k) computed from those very predictions against ground truth. With `--tagger none` it builds a
zero-shot tagger from the base model and the label texts (`LMTXTagger(model, labels)`), for comparison.

    python examples/04_evaluate_and_predict.py --tagger runs/quickstart      # the folder 01 wrote
    python examples/04_evaluate_and_predict.py --tagger none                 # zero-shot all-MiniLM-L6-v2

Time on this 2-core CPU: 4.5 minutes for the 3,019 test documents, measured while a benchmark kept both cores
busy; alone about 2 (one encoding pass over the test split takes about 75 s here, BENCHMARKS.md). Measured on
the tagger 01 wrote: P@1 75.85, P@5 20.89, R@10 95.13 on the whole test split.
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np

from st_lmtx import LMTXTagger, load_lfxmc
from st_lmtx.evaluation import inverse_propensities, xmc_metrics


def main(argv=None):
    p = argparse.ArgumentParser(description="evaluate and run a saved LMTX tagger")
    p.add_argument("--tagger", default="runs/quickstart", help="a tagger folder or Hub id; 'none': zero-shot")
    p.add_argument("--base-model", default="sentence-transformers/all-MiniLM-L6-v2", help="for the zero-shot tagger")
    p.add_argument("--data", default=os.environ.get("LMTX_DATA", "../shared/data/reuters21578"))
    p.add_argument("--eval-docs", type=int, default=None, help="only the first N test documents (default: all)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--output", default="runs/predictions.jsonl", help="the test documents' predicted tags")
    args = p.parse_args(argv)

    labels, test = load_lfxmc(args.data, "tst")
    _, train = load_lfxmc(args.data, "trn")  # its ground truth gives PSP@k's label propensities, nothing else
    if args.eval_docs:
        test = test.subset(range(min(args.eval_docs, len(test))))
    if args.tagger == "none":
        tagger = LMTXTagger(args.base_model, labels)  # embeds the label texts, builds the FAISS index
    else:
        try:
            tagger = LMTXTagger.load(args.tagger)  # model + label set + index, as saved
        except FileNotFoundError as e:
            raise SystemExit(f"{e}\nTrain one first (examples/01_quickstart_local.py) or pass --tagger none") from e
        if set(tagger.labels.ids) != set(labels.ids):
            raise SystemExit(f"{args.tagger} tags with other labels than {args.data}/lbl.json")

    predicted = tagger.predict(test.texts, top_k=max(10, args.top_k))  # best first: [[Tag(id, text, score)]]
    position = {label_id: j for j, label_id in enumerate(labels.ids)}  # ground truth indexes lbl.json's lines
    ranked = np.array([[position[t.id] for t in tags] for tags in predicted])
    metrics = xmc_metrics(ranked, test.targets, [1, 3, 5, 10], inverse_propensities(train.targets, len(labels)))
    print(f"{args.tagger} on {len(test):,} test documents (%):")
    for family in ("P", "R", "nDCG", "PSP"):
        print(f"  {family:<5}" + "".join(f"  @{k} {100 * metrics[f'{family}@{k}']:6.2f}" for k in (1, 3, 5, 10)))

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        for doc_id, truth, tags in zip(test.ids, test.targets, predicted):
            f.write(
                json.dumps(
                    {
                        "id": doc_id,
                        "truth": [labels.texts[j] for j in truth],
                        "tags": [{"id": t.id, "text": t.text, "score": round(t.score, 4)} for t in tags[: args.top_k]],
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    print(f"Predicted tags of {len(test):,} documents: {args.output}")

    texts = ["OPEC agreed to cut crude output to support oil prices.", "The dollar fell against the yen in Tokyo."]
    for text, tags in zip(texts, tagger.predict(texts, top_k=3)):
        print(f"{text!r}: " + ", ".join(f"{t.text} ({t.score:.2f})" for t in tags))
    return metrics


if __name__ == "__main__":
    main()
