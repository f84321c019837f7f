"""Does the untrained encoder's own ranking help a teacher choose a document's positive? Measured on round 1 of
`benchmarks/quality.py` runs (the base model's top-10 shortlist) from the saved shortlist and the teacher's cached
answers: it asks the teacher nothing and trains nothing. Documents whose shortlist the cache does not fully hold
(a run stopped in round 1) are left out and counted.

    python benchmarks/fusion.py                                   # local-best, localpf-best, local05-best
    python benchmarks/fusion.py --run local-best

For each run it prints the precision (against ground truth, evaluation only) of the label each rule would
train on, one a document:

- the encoder's top-1 (the teacher ignored);
- the teacher's highest p(yes) ("yes" or not; what top-yes trains on where there is a "yes");
- a fusion of the two: z(log-odds of p(yes)) + w * z(cosine), both standardised within the document's shortlist;
- the teacher's top "yes", on the documents that have one (their number in brackets).

A judge weaker than the encoder (the 0.5B on Reuters) would need the fusion to get anything out of it; a good one
should need no help from the encoder.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from quality import LOCAL_FILES, OUT, REUTERS, make_teacher  # noqa: E402

WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", help="a quality.py run of an LLM teacher (repeatable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import numpy as np

    from st_lmtx import load_lfxmc
    from st_lmtx.calibration import logit
    from st_lmtx.teacher import TeacherBudgetExceeded

    labels, train = load_lfxmc(REUTERS, "trn")
    rules = ["encoder top-1", "teacher top p(yes)", *(f"fusion w={w:g}" for w in WEIGHTS)]
    print("| run | documents | " + " | ".join(rules) + " | teacher top \"yes\" (documents) |")
    print("|---|---:|" + "---:|" * (len(rules) + 1))
    for run in args.run or ["local-best", "localpf-best", "local05-best"]:
        work = OUT / run / "lmtx-work"
        kind = run.split("-")[0]
        if kind not in LOCAL_FILES or not (work / "round-01" / "shortlist.npz").exists():
            print(f"| {run} | (no round-1 shortlist of an LLM teacher) |")
            continue
        state = json.loads((work / "state.json").read_text())
        docs = train.subset(state["train_indices"])
        saved = np.load(work / "round-01" / "shortlist.npz")
        indices, cosines = saved["indices"], saved["scores"]
        # The cache answers, or the document is skipped (a budget of no calls).
        with make_teacher(kind, labels, train, max_calls=0) as teacher:
            hits = dict.fromkeys(rules, 0)
            judged = missing = with_yes = top_yes_hits = 0
            for i, text in enumerate(docs.texts):
                shortlist = [int(j) for j in indices[i]]
                try:
                    row = teacher.judge([text], [[labels.texts[j] for j in shortlist]], desc=None).judgments[0]
                except TeacherBudgetExceeded:
                    missing += 1
                    continue
                judged += 1
                truth = set(docs.targets[i])
                odds = np.array([logit(j.score) for j in row])
                cos = cosines[i].astype(float)
                z_odds = (odds - odds.mean()) / (odds.std() + 1e-9)
                z_cos = (cos - cos.mean()) / (cos.std() + 1e-9)
                picks = [0, int(np.argmax(odds)), *(int(np.argmax(z_odds + w * z_cos)) for w in WEIGHTS)]
                for rule, k in zip(rules, picks):
                    hits[rule] += shortlist[k] in truth
                yes = [k for k, j in enumerate(row) if j.verdict == "yes"]
                if yes:
                    with_yes += 1
                    top_yes_hits += shortlist[max(yes, key=lambda k: odds[k])] in truth
            cells = " | ".join(f"{hits[r] / max(judged, 1):.3f}" for r in rules)
            top_yes = f"{top_yes_hits / with_yes:.3f} ({with_yes})" if with_yes else "- (0)"
            print(f"| {run} | {judged}" + (f" ({missing} not in the cache)" if missing else "") + f" | {cells} | {top_yes} |")


if __name__ == "__main__":
    main()
