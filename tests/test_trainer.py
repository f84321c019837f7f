import json
import logging
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from conftest import TOY_DOCS, TOY_LABELS
from datasets import Dataset

from st_lmtx import (
    RECIPES,
    LMTXArguments,
    LMTXTagger,
    LMTXTrainer,
    OpenAITeacher,
    OracleTeacher,
    RoundRecord,
    RunMismatchError,
    RunRecord,
    TeacherConfigError,
    load_lfxmc,
)
from st_lmtx.errors import ArgumentsError, RunFileError
from st_lmtx.shortlist import IndexConfig
from st_lmtx.tagger import files_to_upload

SECRET = "sk-trainer-secret-0987654321"


def args(out, **kw):
    # The 8 toy documents are too few to hold a dev sample out of training: it is drawn from them (the reference's
    # way; test_a_held_out_dev_sample_is_never_trained_on runs the default's).
    base = dict(
        output_dir=str(out),
        max_rounds=2,
        dev_size=4,
        held_out_dev=False,
        batch_size=4,
        warmup_steps=0,
        learning_rate=1e-3,
        shortlist_k=3,
        show_progress_bar=False,
        patience=5,
    )
    base.update(kw)
    return LMTXArguments(**base)


def endpoint_teacher(server, out, **kw):
    return OpenAITeacher(
        "fake-model",
        base_url=server.url,
        api_key=SECRET,
        show_progress_bar=False,
        cache=out / "lmtx-work" / "teacher_cache.sqlite",
        **kw,
    )


def asked(server) -> Counter:
    return Counter((e["doc"], e["label"]) for e in server.log if "doc" in e)


def round_metrics(path) -> RoundRecord:
    """A round's own record, ``round-NN/metrics.json``."""
    return RoundRecord.from_dict(json.loads(path.read_text()))


def test_fit_end_to_end_with_an_endpoint_teacher(tiny_model_dir, toy_lfxmc, fake_server, tmp_path):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    _, test_docs = load_lfxmc(toy_lfxmc, "tst")
    out = tmp_path / "run"
    model = LMTXTrainer(tiny_model_dir, labels, teacher=endpoint_teacher(fake_server, out), args=args(out)).fit(
        docs, eval_data=test_docs
    )
    work = out / "lmtx-work"
    for r in ("round-01", "round-02"):
        for name in ("shortlist.npz", "pseudo_labels.jsonl", "metrics.json", "model/model.safetensors"):
            assert (work / r / name).exists(), f"{r}/{name}"
    metrics = round_metrics(work / "round-01" / "metrics.json")
    assert metrics.round == 1 and metrics.pseudo_labels.pairs == len(docs) * 3
    assert "P@1" in metrics.eval
    assert metrics.training_pairs == metrics.schedule.epochs * metrics.pseudo_labels.documents_with_yes
    pseudo = [json.loads(line) for line in (work / "round-01" / "pseudo_labels.jsonl").read_text().splitlines()]
    assert [p["doc_id"] for p in pseudo] == docs.ids and len(pseudo[0]["judged"]) == 3
    # ground truth measured the "yes" answers (it never trained anything): the share of them that are true labels
    yes = [j["label"] in docs.targets[p["doc"]] for p in pseudo for j in p["judged"] if j["verdict"] == "yes"]
    assert yes and metrics.precision["yes_precision"] == pytest.approx(sum(yes) / len(yes))
    assert {"lmtx_labels.jsonl", "lmtx_index.faiss", "README.md", "lmtx_metrics.png", "modules.json"} <= {
        p.name for p in out.iterdir()
    }
    run = RunRecord.read(out / "lmtx_run.json")
    assert [r.round for r in run.rounds] == [0, 1, 2] and run.best_round in (1, 2) and run.finished
    assert run.stop_metric == "llm_top1_margin" and run.rounds[1] == metrics  # the same record in both files
    # lmtx_run.json is published with the model: no document samples; state.json keeps them
    state = RunRecord.read(work / "state.json")
    assert run.train_indices == run.dev_documents == [] and len(state.train_indices) == len(docs)
    assert len(state.dev_documents) == 4 and set(state.dev_documents) <= set(state.train_indices)
    # The stop rule's dev judging is folded into the rounds: round 0 judged the 4 dev documents' whole
    # shortlists, which round 1 then found in the cache; the last round, with no next round, judged the top-k
    # too, because the default stop metric (llm_top1_margin) compares the top-1 with the rest of it.
    zero, one, two = run.rounds
    # The 4 documents' first labels in one request, then their other labels in another.
    assert zero.dev_teacher_usage.pairs == 4 * 3 and zero.dev_teacher_usage.calls == 2
    assert zero.pseudo_labels is None and zero.training_pairs == 0
    assert one.teacher_usage.cache_hits - one.dev_teacher_usage.cache_hits == 4 * 3
    assert two.dev_teacher_usage.pairs == 4 * 3 and set(two.dev) == {"llm_P@1", "llm_top1_margin"}

    # every pair was asked once; a second fit on the finished folder asks nothing and returns the model
    assert max(asked(fake_server).values()) == 1
    calls = len(fake_server.log)
    again = LMTXTrainer(tiny_model_dir, labels, teacher=endpoint_teacher(fake_server, out), args=args(out)).fit(docs)
    assert len(fake_server.log) == calls
    assert again.encode(["x"]).tolist() == model.encode(["x"]).tolist()

    # the model card: tags, teacher name, no secret and no endpoint
    card = (out / "README.md").read_text()
    for tag in ("lmtx", "zero-shot", "extreme-classification"):
        assert f"- {tag}\n" in card
    assert "fake-model" in card and "lmtx_metrics.png" in card and "2406.09288" in card
    assert "`compact` prompt" in card and "dev llm_top1_margin (stop metric)" in card
    assert (
        "address the teacher (instruction patterns): 0 (their instruction sentences were dropped before judging)"
        in card
    )
    upload = files_to_upload(out)
    assert "README.md" in upload and "lmtx_labels.jsonl" in upload and "lmtx_index.faiss" in upload
    assert not [f for f in upload if f.startswith("lmtx-work/") or ".sqlite" in f]
    for name in upload:
        text = (out / name).read_bytes()
        assert SECRET.encode() not in text and b"127.0.0.1" not in text, name
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    # the folder is a tagger: load and predict, no LLM involved
    tags = LMTXTagger.load(out).predict(["Gold prices rallied."], top_k=2)
    assert len(tags[0]) == 2 and tags[0][0].text in TOY_LABELS


def test_interrupted_fit_resumes_without_repeating_calls(tiny_model_dir, toy_lfxmc, fake_server, tmp_path):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    out = tmp_path / "run"

    class InterruptedInRoundTwo(OpenAITeacher):
        """Judges half of round 2's documents, then the user presses Ctrl-C."""

        def judge(self, documents, candidates, desc="Teacher", stop_at=None):
            if desc == "Teacher (round 2)":
                super().judge(documents[:4], candidates[:4], desc)
                raise KeyboardInterrupt
            return super().judge(documents, candidates, desc)

    first = InterruptedInRoundTwo(
        "fake-model",
        base_url=fake_server.url,
        api_key=SECRET,
        show_progress_bar=False,
        cache=out / "lmtx-work" / "teacher_cache.sqlite",
    )
    with pytest.raises(KeyboardInterrupt):
        LMTXTrainer(tiny_model_dir, labels, teacher=first, args=args(out, max_rounds=3)).fit(docs)
    work = out / "lmtx-work"
    assert (work / "round-01" / "metrics.json").exists() and not (work / "round-02" / "metrics.json").exists()
    round1 = (work / "round-01" / "metrics.json").stat().st_mtime_ns
    LMTXTrainer(tiny_model_dir, labels, teacher=endpoint_teacher(fake_server, out), args=args(out, max_rounds=3)).fit(
        docs
    )
    assert (work / "round-01" / "metrics.json").stat().st_mtime_ns == round1  # round 1 was not redone
    assert (work / "round-03" / "metrics.json").exists()
    assert max(asked(fake_server).values()) == 1  # no pair was asked twice across the two runs
    # a run with other settings does not silently reuse the folder
    with pytest.raises(RunMismatchError, match=r"different args \(margin: 0.3 there, 0.5 now\)"):
        LMTXTrainer(
            tiny_model_dir, labels, teacher=endpoint_teacher(fake_server, out), args=args(out, margin=0.5)
        ).fit(docs)


@pytest.mark.parametrize("form", ["list", "dataset", "path"])
def test_fit_accepts_every_input_form(form, tiny_model_dir, toy_lfxmc, tmp_path):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    teacher = OracleTeacher(labels, docs)
    inputs = {
        "list": (TOY_LABELS, docs.texts),
        "dataset": (Dataset.from_dict({"text": TOY_LABELS}), Dataset.from_dict({"text": docs.texts})),
        "path": (toy_lfxmc / "lbl.json", toy_lfxmc / "trn.json"),
    }[form]
    out = tmp_path / form
    model = LMTXTrainer(tiny_model_dir, inputs[0], teacher=teacher, args=args(out, max_rounds=1)).fit(inputs[1])
    assert model.encode(["Gold"]).shape == (1, 32)
    stats = round_metrics(out / "lmtx-work" / "round-01" / "metrics.json").pseudo_labels
    assert stats.documents == len(docs) and stats.yes > 0
    assert LMTXTagger.load(out).labels.texts == TOY_LABELS


def test_default_teacher_error_says_how_to_give_one(tiny_model_dir, toy_lfxmc, tmp_path, monkeypatch):
    monkeypatch.delenv("LMTX_TEACHER_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("ST_LMTX_CACHE", str(tmp_path / "empty-cache"))
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    with pytest.raises(TeacherConfigError, match="LMTX_TEACHER_URL.*st-lmtx fetch-model"):
        LMTXTrainer(tiny_model_dir, labels, args=args(tmp_path / "o")).fit(docs)


def test_default_teacher_from_environment(tiny_model_dir, toy_lfxmc, fake_server, tmp_path, monkeypatch):
    monkeypatch.setenv("LMTX_TEACHER_URL", fake_server.url)
    monkeypatch.setenv("LMTX_TEACHER_MODEL", "fake-model")
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    LMTXTrainer(tiny_model_dir, labels, args=args(tmp_path / "o", max_rounds=1)).fit(docs)
    assert len(asked(fake_server)) >= len(docs) * 3
    assert (tmp_path / "o" / "lmtx-work" / "teacher_cache.sqlite").exists()


def test_default_teacher_says_which_variable_gave_its_endpoint(fake_server, monkeypatch, caplog):
    from st_lmtx.teacher.factory import default_teacher

    monkeypatch.delenv("LMTX_TEACHER_URL", raising=False)
    monkeypatch.delenv("LMTX_TEACHER_MODEL", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.url)
    with caplog.at_level(logging.INFO, logger="st_lmtx.teacher.factory"):
        teacher = default_teacher()
    assert teacher.model_name == "fake" and teacher.base_urls == [fake_server.url]
    assert "No teacher given: the endpoint in $OPENAI_BASE_URL" in caplog.text


def test_fit_closes_the_teacher_it_built_and_only_that(tiny_model_dir, toy_lfxmc, fake_server, tmp_path, monkeypatch):
    import st_lmtx.trainer.lmtx_trainer as trainer_module

    built, closed = [], []
    real_default = trainer_module.default_teacher

    def recording_default(**kw):
        teacher = real_default(**kw)
        teacher.close = lambda: closed.append(teacher)  # the endpoint teacher holds nothing; count the call
        built.append(teacher)
        return teacher

    monkeypatch.setattr(trainer_module, "default_teacher", recording_default)
    monkeypatch.setenv("LMTX_TEACHER_URL", fake_server.url)
    monkeypatch.setenv("LMTX_TEACHER_MODEL", "fake-model")
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    trainer = LMTXTrainer(tiny_model_dir, labels, args=args(tmp_path / "o", max_rounds=1))
    trainer.fit(docs)
    assert len(built) == 1 and closed == built
    with pytest.raises(sqlite3.ProgrammingError):  # its cache connection is closed too
        built[0].cache.count()

    # a failing fit releases it as well; the next access builds a fresh one
    def fail(*a, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(trainer, "_write_final", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        trainer.fit(docs)
    assert len(built) == 2 and closed == built and trainer.teacher is not built[1]

    # a teacher the caller passed in stays open: the caller may use it again
    mine = endpoint_teacher(fake_server, tmp_path / "p")
    LMTXTrainer(tiny_model_dir, labels, teacher=mine, args=args(tmp_path / "p", max_rounds=1)).fit(docs)
    assert mine.cache.count() > 0


def test_resume_refuses_another_run_defining_setting_and_takes_the_others(tiny_model_dir, toy_lfxmc, tmp_path):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    out = tmp_path / "run"

    def fit(**kw):
        return LMTXTrainer(tiny_model_dir, labels, teacher=OracleTeacher(labels, docs), args=args(out, **kw)).fit(docs)

    fit(max_rounds=1)
    state_path = out / "lmtx-work" / "state.json"
    assert RunRecord.read(state_path).stop_reason == "reached max_rounds=1"
    with pytest.raises(RunMismatchError, match=r"args \(min_steps_per_round: 8 there, 0 now\)"):
        fit(max_rounds=1, min_steps_per_round=0)
    # max_rounds and patience do not define the run: a larger max_rounds goes on after round 1
    fit(max_rounds=2, patience=6)
    state = RunRecord.read(state_path)
    assert [r.round for r in state.rounds] == [0, 1, 2] and state.args["max_rounds"] == 2
    assert state.args["patience"] == 6 and state.finished
    # a state file of another record version is refused whole, naming it and the way out
    data = json.loads(state_path.read_text())
    state_path.write_text(json.dumps(data | {"version": 1}))
    refused = r"state\.json is not a readable LMTX run record .*record version 1.*delete state\.json"
    with pytest.raises(RunFileError, match=refused):
        fit(max_rounds=2, patience=6)


def test_the_metrics_plot_legend_covers_no_point(tmp_path):
    """The legend used to sit inside the axes, where it could cover the last dev point (reported in issue 13)."""
    import numpy as np

    from st_lmtx.trainer.model_card import metrics_figure, plot_metrics

    rounds = [
        RoundRecord(round=r, dev={"llm_P@1": p}, eval={"P@1": e, "P@5": e / 4, "R@10": 0.9 + r / 100})
        for r, (p, e) in enumerate([(0.62, 0.49), (0.95, 0.85), (0.98, 0.86), (0.99, 0.90)])
    ]
    record = RunRecord(base_model="m", num_labels=6, teacher={}, args={}, stop_metric="llm_P@1", rounds=rounds)
    empty = RunRecord(base_model="m", num_labels=6, teacher={}, args={}, stop_metric="llm_P@1")
    fig = metrics_figure(record)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    points = np.concatenate([ax.transData.transform(line.get_xydata()) for line in ax.get_lines()])
    assert len(points) == 16 and not any(legend.contains(x, y) for x, y in points)
    # beside the axes, so no point or line of any run can be under it; and inside the saved image
    assert legend.x0 >= ax.get_window_extent().x1
    assert fig.get_window_extent().contains(legend.x1 - 1, legend.y0 + 1)
    assert plot_metrics(record, tmp_path / "m.png").stat().st_size > 0
    assert plot_metrics(empty, tmp_path / "e.png") is None


def test_hnsw_ef_search_reaches_the_index_and_bad_values_are_refused(tiny_model_dir, tmp_path):
    import numpy as np

    from st_lmtx.shortlist import LabelIndex

    trainer = LMTXTrainer(tiny_model_dir, TOY_LABELS, teacher=None, args=args(tmp_path / "o", hnsw_ef_search=300))
    assert trainer.index_config.ef_search == 300 and IndexConfig().ef_search == 512  # not the default
    config = IndexConfig(hnsw_threshold=10, ef_search=trainer.index_config.ef_search)
    vectors = np.random.default_rng(0).random((50, 8), dtype=np.float32)
    assert LabelIndex.build(vectors, config).index.hnsw.efSearch == 300
    with pytest.raises(ArgumentsError, match="hnsw_ef_search must be >= 1; got 0"):
        args(tmp_path / "p", hnsw_ef_search=0)


def test_recipes_fill_only_the_settings_left_unset():
    best = LMTXArguments()
    assert best.recipe == "best" and all(getattr(best, k) == v for k, v in RECIPES["best"].items())
    assert (
        best.positives,
        best.accumulate_judgments,
        best.restart_from_base,
        best.softmax_weighting,
        best.warmup_steps,
        best.min_steps_per_round,
        best.average_rounds,
    ) == ("top-yes", True, False, True, 0.1, 8, True)
    assert (best.stop_metric, best.patience) == ("llm_top1_margin", 1)
    ref = LMTXArguments(recipe="reference")
    assert (
        ref.positives,
        ref.accumulate_judgments,
        ref.restart_from_base,
        ref.softmax_weighting,
        ref.warmup_steps,
        ref.min_steps_per_round,
        ref.dev_size,
        ref.max_rounds,
        ref.average_rounds,
    ) == ("random-yes", False, True, False, 100, 0, 800, 6, False)
    mixed = LMTXArguments(recipe="reference", positives="top-yes", restart_from_base=False)
    assert (mixed.positives, mixed.restart_from_base, mixed.warmup_steps) == ("top-yes", False, 100)
    # The recipe's name is not part of a run's identity: the settings it filled in are.
    assert "recipe" not in best.run_defining() and mixed.run_defining()["positives"] == "top-yes"
    with pytest.raises(ArgumentsError, match="recipe must be one of best, reference; got 'fast'"):
        LMTXArguments(recipe="fast")


@pytest.mark.parametrize(
    "pairs, expected",
    [
        (5000, (128, 1, 40)),
        (900, (128, 1, 8)),
        (280, (35, 1, 8)),
        (100, (32, 3, 10)),
        (450, (57, 1, 8)),
        (10, (11, 8, 8)),
    ],
)
def test_a_small_round_still_trains_its_minimum_steps(pairs, expected):
    from st_lmtx.trainer.training import round_schedule

    s = round_schedule(pairs, LMTXArguments())
    assert (s.batch_size, s.epochs, s.steps) == expected and s.steps >= 8
    # The reference recipe takes batch and passes as given: 280 pairs are 3 steps, short of its 100 warmup steps.
    s = round_schedule(280, LMTXArguments(recipe="reference"))
    assert (s.batch_size, s.epochs, s.steps) == (128, 1, 3)
    s = round_schedule(40, LMTXArguments(batch_size=16, min_steps_per_round=0))  # scaling off: as given
    assert (s.batch_size, s.epochs, s.steps) == (16, 1, 3)


def test_fit_trains_a_small_round_on_its_schedule(tiny_model_dir, toy_lfxmc, tmp_path):
    from st_lmtx.trainer.records import RoundSchedule

    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    out = tmp_path / "run"
    a = LMTXArguments(output_dir=str(out), max_rounds=1, dev_size=4, shortlist_k=3, show_progress_bar=False)
    LMTXTrainer(tiny_model_dir, labels, teacher=OracleTeacher(labels, docs), args=a).fit(docs)
    one = RunRecord.read(out / "lmtx_run.json").rounds[1]
    usable = one.pseudo_labels.documents_with_yes
    # 8 toy documents: the batch floor is num_negatives + 1 = 11, so enough passes for 8 steps of 11.
    fewest_passes = next(e for e in range(1, 100) if -(-usable * e // 11) >= 8)
    assert one.schedule == RoundSchedule(batch_size=11, epochs=fewest_passes, steps=-(-usable * fewest_passes // 11))
    assert one.training_pairs == usable * one.schedule.epochs and one.schedule.steps >= 8
    assert one.precision == {"trained_positive_precision": 1.0, "yes_precision": 1.0}  # the oracle's answers


def test_the_stop_metric_picks_the_kept_round(tmp_path):
    from st_lmtx.trainer.run_state import RunState

    def dev(p1, margin):
        return {"llm_P@1": p1, "llm_top1_margin": margin}

    def state(stop_metric):
        record = RunRecord(
            base_model="m",
            num_labels=6,
            teacher={},
            args={},
            stop_metric=stop_metric,
            rounds=[RoundRecord(round=0, dev=dev(0.90, 0.40))],
        )
        return RunState(tmp_path / "state.json", record)

    # A lenient teacher: llm_P@1 is flat at 0.97 while the model comes to agree with the teacher's choice.
    rounds = [(0.97, 0.60), (0.97, 0.71), (0.97, 0.69)]
    margin = state("llm_top1_margin")
    for r, (p1, m) in enumerate(rounds, start=1):
        margin.add_round(RoundRecord(round=r, dev=dev(p1, m)), patience=1)
    assert margin.record.best_round == 2 and margin.record.finished and margin.best() == 2
    assert margin.record.stop_reason == "llm_top1_margin on the dev sample did not improve for 1 round(s)"
    # llm_P@1 (the reference's) cannot tell the rounds apart: the tie goes to the earliest, and it stops at once
    p_at_1 = state("llm_P@1")
    for r, (p1, m) in enumerate(rounds[:2], start=1):
        if not p_at_1.record.finished:
            p_at_1.add_round(RoundRecord(round=r, dev=dev(p1, m)), patience=1)
    assert p_at_1.record.best_round == 1 and p_at_1.record.finished and len(p_at_1.rounds) == 3
    # patience 2 waits a round more: round 3 is not better than round 2, but only one round without a better one
    patient = state("llm_top1_margin")
    for r, (p1, m) in enumerate(rounds, start=1):
        patient.add_round(RoundRecord(round=r, dev=dev(p1, m)), patience=2)
    assert patient.record.best_round == 2 and not patient.record.finished
    for bad in ("P@1", "llm_top1_is_best", "llm_mean_score", "llm_top1_beats_median"):
        with pytest.raises(ArgumentsError, match="stop_metric must be one of llm_top1_margin, llm_P@1"):
            LMTXArguments(stop_metric=bad)


def test_the_final_model_averages_the_rounds_the_dev_sample_cannot_tell_apart(tmp_path):
    import random
    import statistics

    from st_lmtx.trainer.run_state import RunState, worse

    rng = random.Random(0)
    base = [rng.gauss(2.0, 2.0) for _ in range(300)]  # each dev document's margin under the base model
    noise = [rng.gauss(0.0, 1.0) for _ in base]

    def final_rounds(gains):
        """The rounds the rule averages for a run whose round r adds gains[r - 1] to every document's margin,
        with noise on each document that differs from round to round but not on average (a round's seed)."""
        record = RunRecord(base_model="m", num_labels=6, teacher={}, args={}, stop_metric="llm_top1_margin")
        state = RunState(tmp_path / "state.json", record)
        state.rounds.append(RoundRecord(round=0))
        for r, gain in enumerate(gains, start=1):
            values = [b + gain + e for b, e in zip(base, noise[r:] + noise[:r])]
            dev = {"llm_P@1": 0.9, "llm_top1_margin": statistics.fmean(values)}
            state.add_round(RoundRecord(round=r, dev=dev, dev_values={"llm_top1_margin": values}), patience=9)
        return state.rounds_to_average()

    # A judge under which every round is better: only the last round is left (the final model is that round).
    assert final_rounds([1.0, 2.0, 3.0, 4.0]) == [4]
    # A judge that sees no difference between the rounds (their seeds move them): every round is averaged.
    assert final_rounds([1.0, 1.0, 1.0, 1.0]) == [1, 2, 3, 4]
    # Climbing, then a plateau: the plateau's rounds; and a round that fell back is left out too.
    assert final_rounds([1.0, 2.0, 2.0, 2.0]) == [2, 3, 4]
    assert final_rounds([2.0, 2.0, 0.5]) == [1, 2]
    # Values that cannot be paired (another dev sample, a round without them) never leave a round out.
    assert not worse([0.0, 0.0], [5.0, 5.0, 5.0]) and not worse(None, [5.0, 5.0]) and not worse([1.0], [2.0])
    assert worse([0.0, 0.0], [1.0, 1.0]) and not worse([1.0, 1.0], [1.0, 1.0])
    assert worse([0.0, 1.0, 0.0], [1.0, 1.0, 1.0], separated=1.0)
    assert not worse([0.0, 1.0, 0.0], [1.0, 1.0, 1.0], separated=2.0)  # mean 2/3, standard error 1/3


def test_the_final_model_averages_the_rounds_weights_or_is_the_kept_round(tiny_model_dir, toy_lfxmc, tmp_path):
    import torch
    from sentence_transformers import SentenceTransformer

    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    _, test_docs = load_lfxmc(toy_lfxmc, "tst")

    def weights(path):
        return SentenceTransformer(str(path), device="cpu").state_dict()

    out = tmp_path / "averaged"
    teacher = OracleTeacher(labels, docs)
    LMTXTrainer(tiny_model_dir, labels, teacher=teacher, args=args(out)).fit(docs, eval_data=test_docs)
    run = RunRecord.read(out / "lmtx_run.json")
    final = run.final
    assert final.averaged_rounds == [1, 2] and final.round == 2 and run.final_record is final
    assert "P@1" in final.eval and set(final.dev) == {"llm_P@1", "llm_top1_margin"}
    one, two, got = (weights(p) for p in (out / "lmtx-work/round-01/model", out / "lmtx-work/round-02/model", out))
    moved = [k for k in got if got[k].is_floating_point() and not torch.equal(one[k], two[k])]
    assert moved  # the rounds differ, so the average is neither of them
    for key in got:
        expected = (one[key] + two[key]) / 2 if got[key].is_floating_point() else one[key]
        assert torch.allclose(got[key], expected, atol=1e-6), key
    assert "Final model: the average of rounds 1, 2's weights" in (out / "README.md").read_text()
    assert "| average of 1, 2 (final) |" in (out / "README.md").read_text()
    # A second fit on the finished folder rebuilds the same average and reuses its record: nothing is measured again.
    calls = teacher.usage.calls
    state = RunRecord.read(out / "lmtx-work/state.json")
    assert state.final == final
    LMTXTrainer(tiny_model_dir, labels, teacher=teacher, args=args(out)).fit(docs, eval_data=test_docs)
    assert teacher.usage.calls == calls and RunRecord.read(out / "lmtx_run.json").final == state.final
    # average_rounds=False: the final model is the kept round's, and the record says so.
    out = tmp_path / "kept"
    LMTXTrainer(tiny_model_dir, labels, teacher=OracleTeacher(labels, docs), args=args(out, average_rounds=False)).fit(
        docs
    )
    run = RunRecord.read(out / "lmtx_run.json")
    kept = weights(out / "lmtx-work" / f"round-{run.best_round:02d}" / "model")
    assert run.final is None and all(torch.equal(v, kept[k]) for k, v in weights(out).items())
    assert run.final_record is run.rounds[run.best_round]
    assert f"Final model: round {run.best_round}'s" in (out / "README.md").read_text()


def test_average_models_refuses_models_of_other_shapes(tiny_model_dir, minilm_path):
    from sentence_transformers import SentenceTransformer

    from st_lmtx.trainer.averaging import average_models

    with pytest.raises(ValueError, match="cannot be averaged"):
        average_models([SentenceTransformer(tiny_model_dir), SentenceTransformer(minilm_path)])
    with pytest.raises(ValueError, match="at least one"):
        average_models([])


def test_the_model_card_repeats_the_teacher_warnings_of_each_round():
    from st_lmtx.pseudo_labels import PseudoLabelStats, teacher_warnings
    from st_lmtx.trainer.model_card import render_model_card

    def round_record(r, with_yes):
        stats = PseudoLabelStats(
            documents=1000, pairs=10000, yes=120, yes_rate=0.012, unparseable=0, documents_with_yes=with_yes
        )
        return RoundRecord(
            round=r,
            pseudo_labels=stats,
            dev={"llm_P@1": 0.1, "llm_top1_margin": 1.25},
            training_pairs=with_yes,
            warnings=teacher_warnings(stats),
        )

    record = RunRecord(
        base_model="m",
        num_labels=90,
        teacher={"model": "small", "backend": "local", "graded": True},
        args={"recipe": "best", "positives": "top-yes", "restart_from_base": False, "dev_size": 800},
        stop_metric="llm_top1_margin",
        best_round=1,
        stop_reason="reached max_rounds=2",
        rounds=[
            RoundRecord(round=0, dev={"llm_P@1": 0.07, "llm_top1_margin": 0.5}),
            round_record(1, 106),
            round_record(2, 400),
        ],
    )
    card = render_model_card(record, loss_config={"margin": 0.3}, citation="@misc{x}", has_plot=False, eval_keys=[])
    assert '- Warning, round 1: the teacher said "yes" for only 106 of 1000 documents (11%)' in card
    assert "Warning, round 2" not in card  # 40% of the documents: not strict
    # each round's stop metric, and the reference's llm_P@1, in the table; the kept round starred
    header = "| round | documents | pairs judged | yes-rate | training pairs | dev llm_top1_margin (stop metric) |"
    assert header + " dev llm_P@1 |" in card
    assert "| 1 * | 1000 | 10000 | 0.012 | 106 | 1.25 | 10.00 |" in card
    assert "| 0 (zero-shot) | - | - | - | - | 0.50 | 7.00 |" in card
    assert "Final model: round 1's model" in card and "`small` (local backend, graded p(yes) scores)" in card
    assert "lmtx_metrics.png" not in card and "@misc{x}" in card


def test_the_model_card_says_what_the_teacher_cost_and_of_what_budget():
    from st_lmtx.teacher.base import TeacherUsage
    from st_lmtx.trainer.model_card import render_model_card

    def usage(new, cached):
        return TeacherUsage(pairs=new + cached, cache_hits=cached, prompt_tokens=7 * new, seconds=new / 2)

    record = RunRecord(
        base_model="m",
        num_labels=90,
        teacher={"model": "small", "backend": "local", "graded": True},
        args={
            "recipe": "best",
            "positives": "top-yes",
            "restart_from_base": False,
            "dev_size": 300,
            "teacher_budget": "20k",
            "shortlist_k": 5,
        },
        stop_metric="llm_top1_margin",
        best_round=1,
        stop_reason="the teacher budget is spent (9,000 pairs of 20,000 pairs)",
        rounds=[
            RoundRecord(round=0, dev={"llm_top1_margin": 0.5}, teacher_usage=usage(3000, 0)),
            RoundRecord(round=1, dev={"llm_top1_margin": 1.5}, teacher_usage=usage(4000, 3000)),
            RoundRecord(round=2, dev={"llm_top1_margin": 1.0}, teacher_usage=usage(2000, 9000), budget_reached=True),
        ],
        teacher_spent=usage(9000, 12000),
    )
    card = render_model_card(record, loss_config={}, citation="@misc{x}", has_plot=False, eval_keys=[])
    assert (
        "- Teacher cost: 9,000 pairs judged anew (rounds 0-2: 3,000, 4,000, 2,000), 63,000 tokens, 1h15m of judging; "
        "budget 20,000 pairs, 9,000 pairs spent (top-5 labels a document;" in card
    )


def test_the_dev_sample_is_drawn_from_the_training_documents_or_held_out_of_them():
    from st_lmtx.trainer.run_state import sample_documents

    for n, max_docs, dev_size in ((7770, 1000, 300), (7770, None, 800), (300, None, 800), (1200, 1000, 300)):
        a = LMTXArguments(max_docs=max_docs, dev_size=dev_size, held_out_dev=False)
        train, dev = sample_documents(n, a)
        assert len(train) == min(max_docs or n, n) and len(dev) == min(dev_size, len(train))
        assert set(dev) <= set(train) and train == sorted(train) and dev == sorted(dev) and max(train) < n
        assert sample_documents(n, a) == (train, dev)  # seeded: a resumed run draws the same samples
        other = sample_documents(n, LMTXArguments(max_docs=max_docs, dev_size=dev_size, seed=7, held_out_dev=False))
        assert other[1] != dev or len(dev) == len(train) == n  # 300 documents: every one is in the dev sample
        # Held out (the default): never a training document. From beyond max_docs when they suffice (the training
        # sample is then the same), else out of training, at most a fifth of the documents.
        held_train, held_dev = sample_documents(n, LMTXArguments(max_docs=max_docs, dev_size=dev_size))
        assert not set(held_dev) & set(held_train) and held_dev == sorted(held_dev) and max(held_dev) < n
        expected = min(dev_size, max(n // 5, n - len(train)))
        assert len(held_dev) == expected and len(held_train) == min(len(train), n - expected)
        if n - len(train) >= dev_size:
            assert held_train == train
    assert [len(s) for s in sample_documents(300, LMTXArguments(dev_size=800))] == [240, 60]


def test_a_held_out_dev_sample_is_never_trained_on(tiny_model_dir, toy_lfxmc, tmp_path):
    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    out = tmp_path / "held-out"
    teacher = OracleTeacher(labels, docs)
    LMTXTrainer(tiny_model_dir, labels, teacher=teacher, args=args(out, held_out_dev=True, dev_size=2)).fit(docs)
    state = RunRecord.read(out / "lmtx-work" / "state.json")
    # 8 documents: a fifth (1) is held out; no round trains on it, each judges its top-k.
    assert len(state.dev_documents) == 1 and len(state.train_indices) == 7
    assert not set(state.dev_documents) & set(state.train_indices)
    trained_on = {json.loads(line)["doc_id"] for line in (out / "lmtx-work/round-01/pseudo_labels.jsonl").open()}
    assert docs.ids[state.dev_documents[0]] not in trained_on and len(trained_on) == 7
    for r in state.rounds:
        assert r.dev_teacher_usage.pairs == 3 and len(r.dev_values["llm_top1_margin"]) == 1
    # Round 1 asked about its 7 documents' shortlists; nothing of the dev document's was reusable.
    assert state.rounds[1].teacher_usage.pairs - state.rounds[1].dev_teacher_usage.pairs == 7 * 3
    assert "on a dev sample of 1 documents held out of training" in (out / "README.md").read_text()
    # With llm_P@1 as the stop metric a held-out document's top-1 is all the rule reads: nothing more is judged.
    out = tmp_path / "held-out-p1"
    a = args(out, held_out_dev=True, dev_size=2, stop_metric="llm_P@1")
    LMTXTrainer(tiny_model_dir, labels, teacher=OracleTeacher(labels, docs), args=a).fit(docs)
    rounds = RunRecord.read(out / "lmtx-work" / "state.json").rounds
    assert [r.dev_teacher_usage.pairs for r in rounds] == [1, 1, 1] and "llm_top1_margin" not in rounds[1].dev


@pytest.mark.parametrize("warmup", [0.1, 0.5])
def test_a_one_step_round_moves_the_model_whatever_its_warmup_fraction(warmup, tiny_model, tmp_path):
    """Warmup as a fraction is ceil(fraction x steps) steps, and warmup's first step has learning rate 0: a round
    of one step (a strict teacher's few documents, no minimum of steps) used to leave the model as it was."""
    from st_lmtx.trainer.training import train_round

    rows = {
        "anchor": [d[1] for d in TOY_DOCS[:4]],
        "positive": [TOY_LABELS[d[2][0]] for d in TOY_DOCS[:4]],
        "label": [[d[2][0]] for d in TOY_DOCS[:4]],
    }
    before = [p.detach().clone() for p in tiny_model.parameters()]
    a = args(tmp_path, batch_size=4, warmup_steps=warmup, min_steps_per_round=0)
    train_round(tiny_model, Dataset.from_dict(rows), a, tmp_path / "round")  # 4 pairs at batch 4: one step
    moved = max((p.detach() - b).abs().max().item() for p, b in zip(tiny_model.parameters(), before))
    assert moved > 1e-6


def test_a_users_training_arguments_and_callbacks_reach_every_rounds_trainer(tiny_model_dir, toy_lfxmc, tmp_path):
    from sentence_transformers import SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    class Seen(TrainerCallback):
        def __init__(self):
            self.rounds, self.steps, self.grad_norms, self.folders = 0, [], set(), []

        def on_train_begin(self, args, state, control, **kwargs):
            self.rounds += 1
            self.steps.append(0)
            self.grad_norms.add(args.max_grad_norm)
            self.folders.append(args.output_dir)

        def on_step_end(self, args, state, control, **kwargs):
            self.steps[-1] += 1

    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    seen = Seen()
    user_args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "mine"), max_grad_norm=0.25)
    out = tmp_path / "run"
    LMTXTrainer(
        tiny_model_dir,
        labels,
        teacher=OracleTeacher(labels, docs),
        args=args(out, max_rounds=2, patience=2),
        training_args=user_args,
        callbacks=[seen],
    ).fit(docs)
    record = RunRecord.read(out / "lmtx_run.json")
    steps = [r.schedule.steps for r in record.trained_rounds]
    assert seen.rounds == 2 and seen.steps == steps and all(s > 0 for s in steps)
    assert seen.grad_norms == {0.25}  # the user's field, in every round
    assert [Path(f).parent.name for f in seen.folders] == ["round-01", "round-02"]  # the round's own folder
