"""Inference speed: tagging (encode + FAISS search) against bare ``model.encode``, and the label index's build.

    python benchmarks/inference.py [--docs 512] [--synthetic 500000]

Label sets: the 90 Reuters-21578 labels, the 13,330 AmazonCat-13K label names, and N synthetic labels
(perturbed copies of the AmazonCat label embeddings, so they cluster like real label names; encoding 500k
texts would only measure the encoder again). Documents: the first ``--docs`` Reuters test documents.
Each label set is measured in a fresh process so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REUTERS = Path(os.environ.get("LMTX_DATA", SHARED / "reuters21578"))
AMAZONCAT = SHARED / "amazoncat13k-labels" / "lbl.json"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def measure(label_set: str, n_docs: int, synthetic: int, repeats: int) -> dict:
    from dataclasses import replace

    import faiss
    import numpy as np

    from st_lmtx import LabelIndex, LMTXTagger, load_labels, load_lfxmc
    from st_lmtx.models import load_model
    from st_lmtx.shortlist import encode

    model = load_model("sentence-transformers/all-MiniLM-L6-v2")
    _, test = load_lfxmc(REUTERS, "tst")
    docs = test.texts[:n_docs]
    if label_set == "reuters":
        labels = load_labels(REUTERS / "lbl.json")
    else:
        labels = load_labels(AMAZONCAT)
    started = time.perf_counter()
    embeddings = encode(model, labels.texts, 256, False)
    encode_labels_s = time.perf_counter() - started
    if label_set == "synthetic":
        rng = np.random.default_rng(0)
        base = embeddings[rng.integers(0, len(embeddings), synthetic)]
        embeddings = base + rng.normal(scale=0.03, size=base.shape).astype(np.float32)
        labels = load_labels({f"s{i}": f"synthetic label {i}" for i in range(synthetic)})
        encode_labels_s = float("nan")
    rss_before = rss_mb()
    started = time.perf_counter()
    index = LabelIndex.build(embeddings)
    build_s = time.perf_counter() - started
    rss_after = rss_mb()
    index_mb = faiss.serialize_index(index.index).nbytes / 2**20
    tagger = LMTXTagger(model, labels, index=index)

    model.encode(docs[:32])  # warm up
    bare, tagged = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        model.encode(docs, batch_size=64)
        bare.append(len(docs) / (time.perf_counter() - started))
        started = time.perf_counter()
        tagger.predict(docs, top_k=10)
        tagged.append(len(docs) / (time.perf_counter() - started))
    # recall of the index against exact search, for the approximate (HNSW) case
    queries = encode(model, docs[:200], 64, False)
    exact = faiss.IndexFlatIP(embeddings.shape[1])
    exact.add(np.ascontiguousarray(embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True), dtype=np.float32))
    truth = exact.search(queries, 10)[1]
    found = index.search(queries, 10)[0]
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)]))
    sweep = []
    if index.kind == "hnsw":
        # efSearch trades search time for recall: the candidates HNSW keeps while it walks the graph.
        all_queries = encode(model, docs, 64, False)
        for ef in (64, 128, 256, 512, 1024, 2048):
            tuned = LabelIndex(index.index, replace(index.config, ef_search=ef))
            found = tuned.search(queries, 10)[0]
            started = time.perf_counter()
            tuned.search(all_queries, 10)
            qps = len(all_queries) / (time.perf_counter() - started)
            sweep.append(
                {
                    "ef_search": ef,
                    "recall@10": float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])),
                    "queries_s": qps,
                }
            )
    return {
        "labels": len(labels),
        "index": index.kind,
        "encode_labels_s": encode_labels_s,
        "build_s": build_s,
        "build_rss_mb": max(rss_after - rss_before, 0.0),
        "index_mb": index_mb,
        "process_peak_mb": peak_rss_mb(),  # the whole process: model, documents, embeddings, index
        "bare_docs_s": max(bare),
        "tag_docs_s": max(tagged),
        "ratio": max(tagged) / max(bare),
        "recall@10": recall,
        "ef_sweep": sweep,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--synthetic", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one label set in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.docs, args.synthetic, args.repeats)))
        return
    from st_lmtx import IndexConfig

    rows = []
    for name in ("reuters", "amazoncat", "synthetic"):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--docs",
            str(args.docs),
            "--synthetic",
            str(args.synthetic),
            "--repeats",
            str(args.repeats),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append((name, json.loads(out)))
        print(f"measured {name}", file=sys.stderr)
    print(f"\nall-MiniLM-L6-v2, {args.docs} Reuters test documents, top-10, {os.cpu_count()} CPU cores\n")
    print(
        "| label set | labels | index | label encoding s | index build s | memory added by the build MB | index MB | "
        "bare encode docs/s | tagging docs/s | tagging / bare | recall@10 vs exact |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        enc = "-" if r["encode_labels_s"] != r["encode_labels_s"] else f"{r['encode_labels_s']:.1f}"
        print(
            f"| {name} | {r['labels']:,} | {r['index']} | {enc} | {r['build_s']:.2f} | {r['build_rss_mb']:.0f} | "
            f"{r['index_mb']:.0f} | {r['bare_docs_s']:.1f} | {r['tag_docs_s']:.1f} | {r['ratio']:.2f} | "
            f"{r['recall@10']:.3f} |"
        )
    for name, r in rows:
        if r.get("ef_sweep"):
            print(
                f"\nHNSW efSearch on {name} ({r['labels']:,} labels; recall@10 against exact search on 200 "
                f"documents, search speed on {args.docs}; efSearch {IndexConfig().ef_search} is the default)\n"
            )
            print("| efSearch | recall@10 | searches/s (search only) |")
            print("|---:|---:|---:|")
            for e in r["ef_sweep"]:
                print(f"| {e['ef_search']} | {e['recall@10']:.3f} | {e['queries_s']:,.0f} |")


if __name__ == "__main__":
    main()
