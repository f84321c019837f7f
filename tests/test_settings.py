"""Every setting is defined once: the `train` and `judge` flags are the settings dataclasses' fields, name for name
and default for default; the choices the code implements are the fields' choices; one place validates."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from st_lmtx.arguments import GROUPS, RECIPES, LMTXArguments, TeacherArguments
from st_lmtx.cli import COMMAND_INPUTS, build_parser
from st_lmtx.errors import ArgumentsError

GENERAL = {"help", "quiet", "debug"}


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def flags(command: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in subparser(command)._actions if a.dest not in GENERAL}


def cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata["cli"]]


def field_default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@pytest.mark.parametrize(
    "command, classes, run_fields",
    [("train", (LMTXArguments, TeacherArguments), ()), ("judge", (TeacherArguments,), ("teacher_budget",))],
)
def test_flags_are_the_fields_name_for_name_and_default_for_default(command, classes, run_fields):
    actions = flags(command)
    fields = {f.name: f for cls in classes for f in cli_fields(cls)}
    fields |= {f.name: f for f in cli_fields(LMTXArguments) if f.name in run_fields}  # judge's budget
    for name, f in fields.items():
        action = actions[name]
        assert action.option_strings[0] == "--" + name.replace("_", "-")
        assert action.default == field_default(f), name
        if name in run_fields:  # judge has no run: its budget stops the command, and its help says so
            assert "stops" in action.help and action.help != f.metadata["help"]
        else:
            assert action.help == f.metadata["help"]
        assert action.choices == f.metadata["choices"]
    # and no flag that is neither a setting nor one of the command's own inputs
    assert set(actions) == set(fields) | set(COMMAND_INPUTS[command])


def test_train_help_is_short_and_grouped():
    parser = subparser("train")
    options = [a for a in parser._actions if a.dest not in GENERAL]
    assert len(options) <= 35
    titles = [g.title for g in parser._action_groups if g._group_actions]
    assert [t for t in titles if t in GROUPS] == [g for g in GROUPS if g in titles]
    assert {"data", "model", "teacher", "training", "stopping", "output"} <= set(titles)


def test_python_only_fields_are_few_and_documented():
    python_only = [
        f.name for cls in (LMTXArguments, TeacherArguments) for f in dataclasses.fields(cls) if not f.metadata["cli"]
    ]
    assert all(f.metadata["help"] for cls in (LMTXArguments, TeacherArguments) for f in dataclasses.fields(cls))
    assert len(python_only) <= 12, python_only


def test_recipes_fill_exactly_the_fields_marked_recipe():
    marked = {f.name for f in dataclasses.fields(LMTXArguments) if f.metadata["recipe"]}
    assert all(set(recipe) == marked for recipe in RECIPES.values())
    assert all(f.default is None for f in dataclasses.fields(LMTXArguments) if f.metadata["recipe"])
    for name, recipe in RECIPES.items():
        args = LMTXArguments(recipe=name)
        assert {k: getattr(args, k) for k in recipe} == recipe
    # a setting given explicitly wins over the recipe
    assert LMTXArguments(recipe="reference", positives="top-yes").positives == "top-yes"


def test_the_run_defining_settings_are_the_fields_marked_run():
    args = LMTXArguments()
    marked = {f.name for f in dataclasses.fields(LMTXArguments) if f.metadata["run"]}
    assert set(args.run_defining()) == marked
    assert {"seed", "max_docs", "positives", "learning_rate"} <= marked
    assert not {"max_rounds", "patience", "output_dir", "stop_metric"} & marked  # these may change on resume


def test_the_choices_are_what_the_code_implements():
    from st_lmtx.evaluation.llm_judged_evaluator import SIGNALS
    from st_lmtx.pseudo_labels import POSITIVES
    from st_lmtx.teacher.prompts import PROMPTS

    choices = {
        f.name: f.metadata["choices"] for cls in (LMTXArguments, TeacherArguments) for f in dataclasses.fields(cls)
    }
    assert set(choices["stop_metric"]) == set(SIGNALS)
    assert set(choices["positives"]) == set(POSITIVES)
    assert set(choices["prompt"]) == set(PROMPTS)
    assert set(choices["recipe"]) == set(RECIPES)


@pytest.mark.parametrize(
    "given, message",
    [
        ({"recipe": "fast"}, "recipe must be one of best, reference; got 'fast'"),
        ({"positives": "score-weighted"}, "positives must be one of top-yes, random-yes"),
        ({"stop_metric": "llm_mean_score"}, "stop_metric must be one of llm_top1_margin, llm_P@1"),
        ({"max_docs": 0}, "max_docs must be >= 1; got 0"),
        ({"shortlist_k": 0}, "shortlist_k must be >= 1"),
        ({"dev_size": -1}, "dev_size must be >= 0"),
    ],
)
def test_settings_are_checked_in_one_place(given, message):
    with pytest.raises(ArgumentsError) as e:
        LMTXArguments(**given)
    assert message in str(e.value)


def test_teacher_settings_are_checked_too():
    with pytest.raises(ArgumentsError, match="prompt must be one of compact, reference; got 'prefilled'"):
        TeacherArguments(prompt="prefilled")
    with pytest.raises(ArgumentsError, match="rpm must be >= 1"):
        TeacherArguments(rpm=0)


def test_parsed_flags_build_the_same_arguments_as_python():
    from st_lmtx.cli import settings_from

    parsed = build_parser().parse_args(
        [
            "train",
            "--data",
            "x",
            "--recipe",
            "reference",
            "--max-docs",
            "300",
            "--no-restart-from-base",
            "--learning-rate",
            "1e-4",
        ]
    )
    args = settings_from(parsed, LMTXArguments)
    expected = LMTXArguments(recipe="reference", max_docs=300, restart_from_base=False, learning_rate=1e-4)
    assert args == expected
    assert settings_from(build_parser().parse_args(["train"]), LMTXArguments) == LMTXArguments()
    assert settings_from(build_parser().parse_args(["judge"]), TeacherArguments) == TeacherArguments()


def test_the_options_page_documents_every_setting():
    """docs/options.md's tables are generated (scripts/mkdocs_hooks.py): every field, flag, default and help text,
    and no marker left over."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", root / "scripts" / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = hooks.render((root / "docs" / "options.md").read_text())
    assert "<!-- settings" not in page
    first_cells = {line.split(" | ")[0]: line for line in page.splitlines() if line.startswith("| `")}
    for cls in (LMTXArguments, TeacherArguments):
        for f in dataclasses.fields(cls):
            kebab = f.name.replace("_", "-")
            names = [f"| `--{kebab}`", f"| `--[no-]{kebab}`"] if f.metadata["cli"] else [f"| `{f.name}`"]
            rows = [row for cell, row in first_cells.items() if cell in names or cell.startswith(f"| `--{kebab} ")]
            assert len(rows) == 1, f.name
            assert f.metadata["help"].removeprefix("(recipe) ") in rows[0], f.name
    assert "| `--[no-]held-out-dev` | *recipe* |" in page
    assert "| `--seed` | 42 | seeds the samples, the positive draws and training; *run* |" in page
    assert "| `hnsw_threshold` | 100,000 |" in page
