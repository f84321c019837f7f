"""Could any dev signal pick the best round? The stop rule judges a dev sample drawn from the run's own training
documents, which the rounds train on. This measures, with ground truth in place of the teacher (a perfect judge,
evaluation only), each saved round model of finished `benchmarks/quality.py` runs on:

- the run's dev sample (the documents the stop rule judges: in-sample, trained on);
- as many training documents outside the run's sample (held out: what a dev sample kept out of training sees);
- the test split (from the run's record).

    python benchmarks/dev_sample.py                          # every finished run under .cache/bench-quality
    python benchmarks/dev_sample.py --run oracle-best --run local05-best

It asks no teacher and trains nothing (a few minutes a run on 2 cores). It prints P@1 per round for each set,
the Spearman correlation of each dev set's P@1 with test P@1 over rounds 0-N, and the round the stop rule
(patience 1) would keep with each, as test P@1 under the best round.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from quality import OUT, REUTERS, kept_round  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", help="a finished quality.py run (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out documents")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from scipy.stats import spearmanr

    from st_lmtx import XMCEvaluator, load_lfxmc
    from st_lmtx.models import load_model
    from st_lmtx.trainer.records import RoundRecord, RunRecord

    labels, train = load_lfxmc(REUTERS, "trn")
    runs = args.run or sorted(p.parent.name for p in OUT.glob("*/lmtx_run.json"))
    print(
        "| run | documents | P@1 per round (0 = zero-shot), the run's dev | held-out | test | Spearman with test: "
        "run's dev / held-out | kept round (test P@1 minus the best round's): run's dev / held-out |"
    )
    print("|---|---:|---|---|---|---|---|")
    for run in runs:
        record = RunRecord.read(OUT / run / "lmtx-work" / "state.json")
        sample, dev = record.train_indices, record.dev_documents
        outside = sorted(set(range(len(train))) - set(sample))
        held_out = sorted(random.Random(args.seed).sample(outside, len(dev)))
        sets = {"in": train.subset(dev), "out": train.subset(held_out)}
        p1: dict[str, list[float]] = {"in": [], "out": []}
        work = OUT / run / "lmtx-work"
        for r in record.rounds:
            model = load_model(str(work / f"round-{r.round:02d}" / "model" if r.round > 0 else work / "base-model"))
            for name, docs in sets.items():
                p1[name].append(XMCEvaluator(labels, docs, k_values=(1,), write_csv=False)(model)["P@1"])
        test = [r.eval["P@1"] for r in record.rounds]
        best = max(test[1:])
        rho = {k: spearmanr(v, test).statistic for k, v in p1.items()}
        # The dev P@1 of each set as the stop signal of the rounds.
        kept = {
            k: kept_round(
                RunRecord(
                    record.base_model,
                    record.num_labels,
                    record.teacher,
                    record.args,
                    "llm_P@1",
                    [RoundRecord(r, dev={"llm_P@1": x}) for r, x in enumerate(v)],
                ),
                "llm_P@1",
            )
            for k, v in p1.items()
        }
        fmt = lambda values: "/".join(f"{100 * v:.1f}" for v in values)  # noqa: E731
        print(
            f"| {run} | {len(dev)} | {fmt(p1['in'])} | {fmt(p1['out'])} | {fmt(test)} | "
            f"{rho['in']:.2f} / {rho['out']:.2f} | "
            + " / ".join(f"{kept[k]} ({100 * (test[kept[k]] - best):+.2f})" for k in ("in", "out"))
            + " |"
        )


if __name__ == "__main__":
    main()
