"""The endpoint teacher as a client: pairs a second, client CPU a pair, and its share of what the server can do.

Each row starts the loopback fake server (tests/fake_openai_server.py) in a process of its own and a fresh client
process that builds ``OpenAITeacher(model, base_url=url, ...)`` and judges documents x 10 labels once, as a run
would (imports, the server's discovery and the in-flight limit's start included). Servers:

- ``50ms``: every request answered after 50 ms, however many are in flight (no capacity limit);
- ``batch256``: a continuous-batching engine, 256 sequences (a prompt each) every 50 ms step, 5,120 pairs/s at most;
  a request that would queue more than 8,192 sequences gets a 429;
- ``1slot``: one request at a time, 50 ms each (llama-cpp-python's server).

``kind`` is the server imitated: ``vllm`` (list prompts, its chat template through /tokenize) or ``plain`` (a
chat request a pair, as a hosted API). ``pairs/s`` counts the whole call; ``steady pairs/s`` the answers from
the 10% point to the 90% point (a run of hours is all steady state). ``share`` is over the ideal: for batch256,
steady pairs/s over its capacity; for a fixed concurrency on 50ms, pairs/s over the requests in flight / their
mean latency (the issue's measure). ``latency x`` is the mean request latency over that of the same server at
concurrency 1.

    python benchmarks/endpoint.py            # every row, a table to paste into BENCHMARKS.md
    python benchmarks/endpoint.py --rows probe
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "fake_openai_server.py"
LABELS = ["Wheat", "Gold", "Crude Oil", "Shipping", "Coffee", "Cocoa", "Sugar", "Interest Rates", "Money", "Trade"]

SERVERS = {
    "50ms": ["--delay", "0.05"],
    "batch256": ["--delay", "0.05", "--batch", "256"],
    "1slot": ["--delay", "0.05", "--slots", "1"],
}
# name: (server, kind, concurrency, documents)
ROWS = {
    "probe": ("50ms", "vllm", "auto", 200),
    "plain-8": ("50ms", "plain", 8, 200),
    "plain-64": ("50ms", "plain", 64, 200),
    "plain-256": ("50ms", "plain", 256, 200),
    "plain-auto": ("50ms", "plain", "auto", 200),
    "batch256": ("batch256", "vllm", "auto", 5000),
    "batch256-c1": ("batch256", "vllm", 1, 200),
    "batch256-c8": ("batch256", "vllm", 8, 2000),
    "batch256-c32": ("batch256", "vllm", 32, 5000),
    "batch256-c64": ("batch256", "vllm", 64, 5000),
    "1slot": ("1slot", "vllm", "auto", 200),
    "1slot-c1": ("1slot", "vllm", 1, 200),
}
CAPACITY = {"batch256": 256 / 0.05}


def client(url: str, concurrency: str, documents: int) -> dict:
    """Runs in the client process: one judge call, measured."""
    from st_lmtx.teacher import OpenAITeacher
    from st_lmtx.teacher.cache import JudgmentCache

    answered: list[tuple[float, int]] = []  # (time, answers so far), as the cache stores them
    store = JudgmentCache.put_many

    def timed(self, namespace, answers):
        store(self, namespace, answers)
        answered.append((time.perf_counter(), (answered[-1][1] if answered else 0) + len(answers)))

    JudgmentCache.put_many = timed
    concurrency = concurrency if concurrency == "auto" else int(concurrency)
    docs = [
        f"Document {i}: wheat exports, gold prices, crude oil and shipping news, item {i}." for i in range(documents)
    ]
    teacher = OpenAITeacher("fake", base_url=url, concurrency=concurrency, show_progress_bar=False)
    cpu, wall = time.process_time(), time.perf_counter()
    result = teacher.judge(docs, [LABELS] * documents)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pairs = documents * len(LABELS)
    limit = teacher._limits[url]
    # Steady state: from the answer that made 10% of them to the one that made 90%.
    start = next(t for t, n in answered if n >= 0.1 * pairs)
    end, n_end = next((t, n) for t, n in answered if n >= 0.9 * pairs)
    n_start = next(n for t, n in answered if n >= 0.1 * pairs)
    return {
        "pairs": pairs,
        "pairs_per_s": pairs / wall,
        "steady_pairs_per_s": (n_end - n_start) / (end - start),
        "cpu_ms_per_pair": 1000 * cpu / pairs,
        "requests": result.usage.calls,
        "retries": result.usage.retries,
        "graded": sum(j.graded for row in result.judgments for j in row),
        "unparseable": result.usage.unparseable,
        "mean_latency": limit.mean_latency,
        "in_flight": limit.describe(),
    }


def run_row(name: str) -> dict:
    server_name, kind, concurrency, documents = ROWS[name]
    server = subprocess.Popen(
        [sys.executable, str(SERVER), *SERVERS[server_name], "--kind", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        done = subprocess.run(
            [sys.executable, __file__, "--client", url, str(concurrency), str(documents)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=1200,
        )
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
        row = json.loads(done.stdout.strip().splitlines()[-1])
        with urllib.request.urlopen(url + "/stats", timeout=10) as response:
            stats = json.load(response)
    finally:
        server.stdin.close()
        server.wait()
    row.update(name=name, server=server_name, kind=kind, concurrency=concurrency, server_stats=stats)
    return row


def table(rows: list[dict]) -> str:
    base = {r["server"]: r["mean_latency"] for r in rows if r["concurrency"] == 1}
    out = [
        "| row | server | shape | in flight | pairs/s | steady | share | client CPU/pair | latency x | retries |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        shape = "list prompts" if r["kind"] == "vllm" else "chat, a pair a request"
        if r["server"] in CAPACITY:
            share = f"{r['steady_pairs_per_s'] / CAPACITY[r['server']]:.2f}"
        elif isinstance(r["concurrency"], int) and r["kind"] == "plain":
            share = f"{r['pairs_per_s'] / (r['concurrency'] / r['mean_latency']):.2f}"
        else:
            share = "-"
        ratio = f"{r['mean_latency'] / base[r['server']]:.2f}" if r["server"] in base else "-"
        out.append(
            f"| {r['name']} | {r['server']} | {shape} | {r['in_flight']} | {r['pairs_per_s']:,.0f} | "
            f"{r['steady_pairs_per_s']:,.0f} | {share} | "
            f"{r['cpu_ms_per_pair']:.3f} ms | {ratio} | {r['retries']} |"
        )
    return "\n".join(out)


def main() -> None:
    if sys.argv[1:2] == ["--client"]:
        print(json.dumps(client(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows: " + ", ".join(ROWS))
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = [run_row(name) for name in args.rows.split(",")]
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    print(table(rows))


if __name__ == "__main__":
    main()
