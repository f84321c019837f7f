import json

import pytest

from st_lmtx import LMTXTagger
from st_lmtx.cli import main


def cli(command: str, data, model: str, *extra: str) -> int:
    """`st-lmtx -q COMMAND --data DATA --model MODEL ...`"""
    return main(["-q", command, "--data", str(data), "--model", model, *extra])


def test_judge_with_the_oracle_reports_perfect_precision(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "judged.jsonl"
    code = cli(
        "judge",
        toy_lfxmc,
        tiny_model_dir,
        *"--shortlist-k 3 --teacher oracle --cache".split(),
        str(tmp_path / "cache"),
        "--out",
        str(out),
        "--json",
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["documents"] == 8 and summary["pairs"] == 24
    assert summary["yes_precision"] == 1.0 and summary["yes_recall_in_shortlist"] == 1.0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["id"] == "d0" and len(rows[0]["shortlist"]) == 3
    assert {"label_id", "label", "cosine", "verdict", "score"} <= set(rows[0]["shortlist"][0])
    # the oracle's top-scored label is its first "yes" (a true label); a document with none has a wrong top label
    with_a_yes = sum(any(x["verdict"] == "yes" for x in r["shortlist"]) for r in rows)
    assert summary["top_score_precision"] == round(with_a_yes / 8, 4)


def test_train_command_writes_a_loadable_model(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "run"
    code = cli(
        "train",
        toy_lfxmc,
        tiny_model_dir,
        *"--teacher oracle --output-dir".split(),
        str(output),
        *"--max-rounds 1 --shortlist-k 3 --batch-size 4 --warmup-steps 0 --dev-size 4 --teacher-budget 100".split(),
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "zero-shot (round 0)" in printed and "round 1 *" in printed and "P@1" in printed
    # It ends with what the teacher cost: one held-out dev document's top-3 twice (3 + 0-3 new), 7 documents' top-3.
    cost = printed.strip().splitlines()[-1]
    new_pairs = int(cost.split()[1])
    assert 24 <= new_pairs <= 27 and cost.endswith(f"budget 100 pairs: {new_pairs}% spent")
    assert LMTXTagger.load(output).predict(["gold"], top_k=1)[0][0].text
    assert cli("evaluate", toy_lfxmc, str(output), "--json") == 0


def test_judge_imports_exported_judgments_and_asks_nothing(toy_lfxmc, tiny_model_dir, fake_server, tmp_path, capsys):
    def judge(cache, *extra):
        return cli(
            "judge",
            toy_lfxmc,
            tiny_model_dir,
            *"--shortlist-k 2 --json --teacher".split(),
            fake_server.url,
            *"--teacher-model fake-model --cache".split(),
            str(cache),
            *extra,
        )

    assert judge(tmp_path / "a") == 0
    first = json.loads(capsys.readouterr().out)
    asked = len(fake_server.log)
    assert first["pairs"] == 16 and asked == 16 and first["calls"] < 16  # many pairs a request
    assert first["graded"] is True and "ungraded" not in first
    assert fake_server.log[0]["text"].startswith("Is the tag relevant")  # the compact layout is the default
    exported = tmp_path / "j.jsonl.gz"
    assert main(["-q", "judgments", "export", str(exported), "--cache", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert judge(tmp_path / "b", "--import-judgments", str(exported)) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["calls"] == 0 and second["cache_hits"] == 16 and len(fake_server.log) == asked
    assert second["yes_rate"] == first["yes_rate"]
    # the reference prompt is another teacher: its cache cannot take these answers
    assert judge(tmp_path / "c", "--prompt", "reference", "--import-judgments", str(exported)) == 2
    err = capsys.readouterr().err
    assert err.startswith("st-lmtx: error: ") and "another teacher" in err and "Traceback" not in err
    assert err.count("\n") == 1 and len(fake_server.log) == asked
    # an endpoint teacher has no document memory: the in-process teacher's option is accepted and dropped
    assert judge(tmp_path / "a", "--teacher-memory-dir", str(tmp_path / "memory")) == 0
    assert json.loads(capsys.readouterr().out)["cache_hits"] == 16
    assert not (tmp_path / "memory").exists()
    # a concurrency that is neither 'auto' nor a positive number is argparse's usage error, saying what to give
    for bad in ("0", "lots"):
        with pytest.raises(SystemExit):
            judge(tmp_path / "a", "--concurrency", bad)
        err = capsys.readouterr().err
        assert f"--concurrency: concurrency must be 'auto' or an integer >= 1; got '{bad}'" in err
        assert "Traceback" not in err
    assert judge(tmp_path / "a", "--concurrency", "auto") == judge(tmp_path / "a", "--concurrency", "3") == 0
    assert len(fake_server.log) == asked


def test_judge_without_a_model_name_uses_the_one_model_the_endpoint_lists(
    toy_lfxmc, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    from fake_openai_server import FakeOpenAIServer

    monkeypatch.delenv("LMTX_TEACHER_MODEL", raising=False)

    def judge(server, cache):
        return cli(
            "judge",
            toy_lfxmc,
            tiny_model_dir,
            *"--shortlist-k 2 --json --teacher".split(),
            server.url,
            "--cache",
            str(cache),
        )

    with FakeOpenAIServer(models=("qwen-served",)) as server:
        assert judge(server, tmp_path / "a") == 0
        assert json.loads(capsys.readouterr().out)["pairs"] == 16 and len(server.log) == 16
        assert {e["model"] for e in server.log} == {"qwen-served"}
    with FakeOpenAIServer(models=("model-a", "model-b")) as server:
        assert judge(server, tmp_path / "b") == 2
        err = capsys.readouterr().err
        assert err.startswith("st-lmtx: error: ") and "Traceback" not in err
        assert "serves 2 models: model-a, model-b; choose one with --teacher-model" in err
        assert server.log == []  # nothing judged with a guessed model
    with FakeOpenAIServer(models=()) as server:  # no /models route: the error says what to give
        assert judge(server, tmp_path / "c") == 2
        err = capsys.readouterr().err
        assert err.startswith("st-lmtx: error: ") and "Traceback" not in err
        assert "needs a model name: --teacher-model or LMTX_TEACHER_MODEL" in err


def test_quiet_is_accepted_after_the_subcommand_and_silences_the_bars(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    from st_lmtx.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["-q", "fetch-model"]).quiet and parse(["fetch-model", "-q"]).quiet
    assert not parse(["fetch-model"]).quiet
    code = main(
        [
            "judge",
            "-q",
            "--data",
            str(toy_lfxmc),
            "--model",
            tiny_model_dir,
            "--shortlist-k",
            "2",
            "--teacher",
            "oracle",
            "--cache",
            str(tmp_path / "cache"),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["pairs"] == 16
    assert captured.err == ""  # no progress bar (ours or transformers' weight loading), no info log


def test_train_recipe_flag_and_explicit_flags_over_it(toy_lfxmc, tiny_model_dir, tmp_path):
    def train(out, *extra):
        assert (
            cli(
                "train",
                toy_lfxmc,
                tiny_model_dir,
                *"--teacher oracle --output-dir".split(),
                str(out),
                *"--max-rounds 1 --shortlist-k 3 --dev-size 4".split(),
                *extra,
            )
            == 0
        )
        return json.loads((out / "lmtx_run.json").read_text())["args"]

    best = train(tmp_path / "best")
    assert (best["recipe"], best["positives"], best["restart_from_base"], best["min_steps_per_round"]) == (
        "best",
        "top-yes",
        False,
        8,
    )
    ref = train(tmp_path / "ref", "--recipe", "reference", "--no-restart-from-base", "--softmax-weighting")
    assert (
        ref["recipe"],
        ref["positives"],
        ref["warmup_steps"],
        ref["restart_from_base"],
        ref["softmax_weighting"],
    ) == ("reference", "random-yes", 100, False, True)
    assert (tmp_path / "best" / "README.md").read_text().count("Recipe: `best`") == 1


def test_help_shows_each_flags_default_and_judges_own_budget_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train = " ".join(capsys.readouterr().out.split())
    assert "--seed N seeds the samples, the positive draws and training (default: 42)" in train
    assert "(default: lmtx-output)" in train
    assert "(default: sentence-transformers/all-MiniLM-L6-v2)" in train
    assert "$OPENAI_BASE_URL" in train
    with pytest.raises(SystemExit):
        main(["judge", "--help"])
    judge = " ".join(capsys.readouterr().out.split())
    assert "--teacher-budget BUDGET the most the teacher may spend: new judged pairs" in judge
    assert "dev judging" not in judge and "(default: 10)" in judge
