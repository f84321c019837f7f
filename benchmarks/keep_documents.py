"""The removed ``keep_documents`` lever over a whole run: does training each label on its most confidently judged
documents make the 1.5B teacher's positives precise enough (>= 0.85) without costing test P@1?

    python benchmarks/keep_documents.py                 # the run (resumes), then its row
    python benchmarks/keep_documents.py --share 0.5

quality.py's local-best run (the default recipe, 1,000 training documents, 3 rounds, the 1.5B teacher on its cache
with the committed answers, new pairs judged by the LLM), with one change: a round trains only the documents whose
positive (the top-scored "yes") is in the top ``--share`` of its label's documents by p(yes), at least one a label.
The cut is made within each label, as in 0.1 (docs/history.md): a global cut drops every document of a label the
teacher is less sure of. Its folder is ``.cache/bench-quality/local-keep<share>``; its new answers go to the
teacher's cache (``quality.py --export-judgments`` commits them).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import BASE_MODEL, COMMON, OUT, RECIPES, REUTERS, make_teacher, summarize  # noqa: E402

from st_lmtx import pseudo_labels  # noqa: E402

ORIGINAL = pseudo_labels.usable_documents


def keep_share(share: float):
    def usable_documents(pseudo, positives):
        usable = [(d, pos, max(pos, key=lambda j: j.score)) for d, pos in ORIGINAL(pseudo, positives)]
        by_label: dict[int, list[float]] = {}
        for _, _, best in usable:
            by_label.setdefault(best.label, []).append(best.score)
        cut = {label: sorted(s, reverse=True)[math.ceil(share * len(s)) - 1] for label, s in by_label.items()}
        return [(d, pos) for d, pos, best in usable if best.score >= cut[best.label]]

    return usable_documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=float, default=0.5, help="share of each label's documents trained")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "faiss.loader", "sentence_transformers", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from st_lmtx import LMTXArguments, LMTXTrainer, load_lfxmc

    labels, train = load_lfxmc(REUTERS, "trn")
    _, test = load_lfxmc(REUTERS, "tst")
    name = f"local-keep{args.share:g}"
    run_args = LMTXArguments(output_dir=str(OUT / name), eval_k=(1, 3, 5, 10), **COMMON, **RECIPES["best"])
    keep = keep_share(args.share)
    with (
        patch("st_lmtx.pseudo_labels.usable_documents", keep),
        patch("st_lmtx.trainer.curriculum.usable_documents", keep),
        make_teacher("local", labels, train) as teacher,
    ):
        LMTXTrainer(BASE_MODEL, labels, teacher=teacher, args=run_args).fit(train, eval_data=test)
    result = summarize(name)
    print(f"| {name} | {result['per_round_p1']} | {result['precision']} | {result['signal']} |")


if __name__ == "__main__":
    main()
