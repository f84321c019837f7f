"""Smoke tests of examples/: each script's main() on tiny data (the toy LF-XMC folder, a 1-layer model) with the
oracle or the loopback fake server as the teacher, never the network; outputs in tmp_path."""

import importlib.util
import json
import re
from collections import Counter

import pytest
from conftest import REPO, TOY_DOCS, TOY_LABELS, write_jsonl

from st_lmtx import LMTXTagger
from st_lmtx.tagger import files_to_upload

EXAMPLES = REPO / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))


def load(name: str):
    path = EXAMPLES / name
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy LF-XMC folder (6 labels, 8 training and 5 test documents), shared by the module's tests."""
    folder = tmp_path_factory.mktemp("toy")
    write_jsonl(folder / "lbl.json", [{"uid": f"L{i}", "title": t} for i, t in enumerate(TOY_LABELS)])
    docs = [{"uid": f"d{i}", "title": t, "content": c, "target_ind": y} for i, (t, c, y) in enumerate(TOY_DOCS)]
    write_jsonl(folder / "trn.json", docs)
    write_jsonl(folder / "tst.json", docs[:5])
    return str(folder)


@pytest.fixture(scope="module")
def quickstart(toy, tiny_model_dir, tmp_path_factory):
    """01 run with the oracle: its output folder (a trained tagger) and the run it returned."""
    out = tmp_path_factory.mktemp("quickstart") / "run"
    args = [
        "--data",
        toy,
        "--model",
        tiny_model_dir,
        "--teacher",
        "oracle",
        "--max-docs",
        "8",
        "--eval-docs",
        "5",
        "--output",
        str(out),
    ]
    return out, load("01_quickstart_local.py").main(args)


def asked(server) -> Counter:
    return Counter((e["doc"], e["label"]) for e in server.log if "doc" in e)


def test_every_example_has_a_header_a_main_and_a_readme_line():
    assert SCRIPTS == [
        "01_quickstart_local.py",
        "02_server_teacher.py",
        "03_hosted_api.py",
        "04_evaluate_and_predict.py",
        "05_push_to_hub.py",
        "06_own_data.py",
        "07_existing_pipeline.py",
    ]
    listing = (REPO / "docs" / "quickstart.md").read_text()  # the docs' Examples table (README.md links to it)
    for name in SCRIPTS:
        text = (EXAMPLES / name).read_text()
        module = load(name)
        assert "What it shows" in module.__doc__ and re.search(r"^Time\b.*:", module.__doc__, re.M), name
        assert "TIME_" not in text, f"{name}: the measured time is not filled in"
        assert f"python examples/{name}" in module.__doc__, f"{name}: the header says how to run it"
        assert callable(module.main) and text.rstrip().endswith('if __name__ == "__main__":\n    main()'), name
        assert f"| `{name}` |" in listing, f"docs/quickstart.md's Examples section lists {name}"


def test_01_quickstart_trains_and_tags(quickstart, capsys):
    out, run = quickstart
    assert [r.round for r in run.rounds] == [0, 1] and run.best_round == 1
    assert {"P@1", "P@5", "R@10"} <= set(run.rounds[1].eval)
    assert (out / "lmtx-work" / "teacher_cache.sqlite").exists()  # the teacher's answers, where fit keeps them
    tags = LMTXTagger.load(out).predict(["Gold prices rallied."], top_k=2)
    assert len(tags[0]) == 2 and tags[0][0].text in TOY_LABELS


def test_02_server_teacher_discovers_the_model_and_trains(
    toy, tiny_model_dir, fake_server, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("LMTX_TEACHER_MODEL", raising=False)
    out = tmp_path / "run"
    run = load("02_server_teacher.py").main(
        [
            "--base-url",
            fake_server.url,
            "--concurrency",
            "2",
            "--logprobs",
            "--data",
            toy,
            "--model",
            tiny_model_dir,
            "--max-docs",
            "8",
            "--eval-docs",
            "5",
            "--output",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "Teacher: fake at" in printed and "Test P@1 on 5 documents" in printed
    assert {e["model"] for e in fake_server.answered()} == {"fake"}  # the one model GET /models lists
    # 8 documents x 6 labels (the shortlist holds them all), each asked once: the dev pairs were reused
    assert len(asked(fake_server)) == 8 * 6 and max(asked(fake_server).values()) == 1
    assert run.best_round == 1 and LMTXTagger.load(out).predict(["crude oil"], top_k=1)[0]


@pytest.fixture()
def hosted_api():
    """A server shaped like a hosted API: chat requests, a pair each (no tokenizer or template routes)."""
    from fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer(kind="plain") as server:
        yield server


def test_03_hosted_api_ends_on_its_budget_and_goes_on_from_the_cache(toy, tiny_model_dir, hosted_api, tmp_path):
    fake_server = hosted_api
    example = load("03_hosted_api.py")
    out = tmp_path / "run"

    def run(budget):
        return example.main(
            [
                "--base-url",
                fake_server.url,
                "--teacher-model",
                "fake-model",
                "--budget",
                budget,
                "--rounds",
                "4",
                "--rpm",
                "60000",
                "--tpm",
                "10000000",
                "--concurrency",
                "1",  # request by request, so the budget stops at an exact call
                "--data",
                toy,
                "--model",
                tiny_model_dir,
                "--max-docs",
                "8",
                "--eval-docs",
                "5",
                "--output",
                str(out),
            ]
        )

    # 20 pairs: the first dev judging may take 15% of them, the held-out dev document's top-3; the rest, less a dev
    # judging's cost, is shared by rounds 1-3, which reach more documents each; nothing is left for round 4.
    stopped = run("20")
    rounds = stopped["run"].rounds
    assert stopped["run"].stop_reason == "the teacher budget is spent (20 pairs of 20 pairs)"
    assert stopped["usage"]["calls"] == 20 == len(asked(fake_server))
    assert [r.teacher_usage.pairs - r.teacher_usage.cache_hits for r in rounds] == [3, 4, 6, 7]
    assert [r.budget_reached for r in rounds[1:]] == [True, True, True] and rounds[3].settled_documents == 2
    done = run("1000")  # the same command with a larger budget goes on with round 4
    assert done["run"].stop_reason == "reached max_rounds=4" and len(done["run"].trained_rounds) == 4
    # Round 4 finds every document settled or its top-3 in the cache: nothing new, nothing asked twice.
    assert done["usage"]["calls"] == 0 and max(asked(fake_server).values()) == 1
    assert all(e["model"] == "fake-model" for e in fake_server.answered())
    assert LMTXTagger.load(out).predict(["gold"], top_k=1)[0]


def test_04_evaluates_and_predicts_with_a_saved_tagger(quickstart, toy, tiny_model_dir, tmp_path, capsys):
    example = load("04_evaluate_and_predict.py")
    out, _ = quickstart
    metrics = example.main(["--tagger", str(out), "--data", toy, "--output", str(tmp_path / "p.jsonl")])
    assert {f"{m}@{k}" for m in ("P", "R", "nDCG", "PSP") for k in (1, 3, 5, 10)} <= set(metrics)
    assert all(0 <= v <= 1 + 1e-9 for v in metrics.values())
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"d{i}" for i in range(5)]
    assert rows[0]["truth"] == ["Wheat"] and len(rows[0]["tags"]) == 5
    assert {t["text"] for r in rows for t in r["tags"]} <= set(TOY_LABELS)
    # P@1 is what the written predictions say it is
    assert metrics["P@1"] == sum(r["tags"][0]["text"] in r["truth"] for r in rows) / len(rows)
    # the zero-shot tagger built from a plain model, for comparison
    zero = example.main(
        ["--tagger", "none", "--base-model", tiny_model_dir, "--data", toy, "--output", str(tmp_path / "z.jsonl")]
    )
    assert set(zero) == set(metrics)
    with pytest.raises(SystemExit, match="Train one first"):
        example.main(["--tagger", str(tmp_path / "missing"), "--data", toy, "--output", str(tmp_path / "m.jsonl")])


def test_05_dry_run_writes_the_upload_folder_without_work_files(quickstart, tmp_path, monkeypatch, capsys):
    example = load("05_push_to_hub.py")
    out, _ = quickstart
    preview = tmp_path / "upload"
    example.main(["--tagger", str(out), "--dry-run", str(preview)])
    written = sorted(p.relative_to(preview).as_posix() for p in preview.rglob("*") if p.is_file())
    assert written == files_to_upload(out)
    assert {
        "lmtx_labels.jsonl",
        "lmtx_index.faiss",
        "README.md",
        "lmtx_metrics.png",
        "modules.json",
        "model.safetensors",
    } <= set(written)
    assert not [f for f in written if "lmtx-work" in f or ".sqlite" in f]
    assert (out / "lmtx-work").is_dir()  # it was there to leave out
    printed = capsys.readouterr().out
    assert "lmtx_index.faiss" in printed and "The copy loads as a tagger" in printed
    with pytest.raises(SystemExit, match="not empty"):  # never writes over a folder
        example.main(["--tagger", str(out), "--dry-run", str(preview)])
    with pytest.raises(SystemExit, match="--repo-id"):
        example.main(["--tagger", str(out)])

    uploads = []  # the upload path, with the Hub call replaced: what it would send where
    monkeypatch.setattr(
        example, "push_folder_to_hub", lambda *a, **kw: uploads.append((a, kw)) or "https://hub/commit"
    )
    assert example.main(["--tagger", str(out), "--repo-id", "me/tagger", "--private"]) == "https://hub/commit"
    assert uploads == [((out, "me/tagger"), {"private": True})]


def test_06_own_data_from_python_lists(tiny_model_dir, fake_server, tmp_path, monkeypatch, capsys):
    example = load("06_own_data.py")
    monkeypatch.delenv("LMTX_TEACHER_MODEL", raising=False)
    # No --teacher: the trainer's default teacher, here the endpoint in $LMTX_TEACHER_URL.
    monkeypatch.setenv("LMTX_TEACHER_URL", fake_server.url)
    after = example.main(["--model", tiny_model_dir, "--output", str(tmp_path / "default")])
    assert len(after) == len(example.NEW_TICKETS) and all(tags[0].id in example.LABELS for tags in after)
    assert {doc for doc, _ in asked(fake_server)} <= set(example.DOCUMENTS)
    assert len({doc for doc, _ in asked(fake_server)}) == len(example.DOCUMENTS)
    tagger = LMTXTagger.load(tmp_path / "default")
    assert tagger.labels.ids == list(example.LABELS) and tagger.labels.texts == list(example.LABELS.values())
    assert "zero-shot:" in capsys.readouterr().out
    # --teacher URL: a teacher the script makes (and closes) itself, with its cache in the run folder
    monkeypatch.delenv("LMTX_TEACHER_URL")
    example.main(["--teacher", fake_server.url, "--model", tiny_model_dir, "--output", str(tmp_path / "given")])
    assert (tmp_path / "given" / "lmtx-work" / "teacher_cache.sqlite").exists()


def test_07_adds_lmtx_data_to_an_existing_sentence_transformers_script(toy, tiny_model_dir, tmp_path, capsys):
    example = load("07_existing_pipeline.py")
    argv = ["--data", toy, "--model", tiny_model_dir, "--teacher", "oracle", "--k", "3", "--output", str(tmp_path)]
    out = example.main(argv + ["--max-docs", "8", "--eval-docs", "5"])
    judged = out["judged"]
    # The oracle says "yes" to a document's true labels: one LMTX row a document with a true label shortlisted.
    truth = [set(y) for *_, y in TOY_DOCS]
    with_yes = sum(bool(truth[i] & set(row["label_indices"])) for i, row in enumerate(judged))
    assert out["rows"] == {"own": len(example.OWN_PAIRS), "lmtx": with_yes} and with_yes > 0
    assert (
        set(out["before"])
        == set(out["after"])
        == {"test_P@1", "test_P@5", "test_R@1", "test_R@5", "test_nDCG@1", "test_nDCG@5", "test_PSP@1", "test_PSP@5"}
    )
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(tiny_model_dir, device="cpu")
    assert any(not a.equal(b) for a, b in zip(base.parameters(), out["model"].parameters()))  # it trained
    tagger = LMTXTagger.load(tmp_path)
    assert tagger.labels.texts == TOY_LABELS and len(tagger.predict(["Gold prices rallied."], top_k=2)[0]) == 2
    assert (tmp_path / "teacher_cache.sqlite").exists() and "LMTX rows:" in capsys.readouterr().out
