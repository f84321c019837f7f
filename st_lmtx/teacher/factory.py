"""Choosing a teacher from a short specification (CLI, trainer default)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from st_lmtx.arguments import TeacherArguments
from st_lmtx.errors import TeacherConfigError
from st_lmtx.inputs import DocumentSet, LabelSet
from st_lmtx.teacher.base import Teacher
from st_lmtx.teacher.model_files import MODELS, find_default_model, find_model, model_path

logger = logging.getLogger(__name__)

TEACHER_URL_ENV = "LMTX_TEACHER_URL"
TEACHER_MODEL_ENV = "LMTX_TEACHER_MODEL"

_TEACHER_COMMON = ("cache", "show_progress_bar", "budget")
_ENDPOINT_ONLY = ("concurrency", "logprobs", "top_logprobs", "timeout", "max_retries", "api_key")
_RATE_LIMITS = ("rpm", "tpm", "rate_window")
_IN_PROCESS_ONLY = ("memory_mb", "memory_dir", "memory_disk_mb")


NO_TEACHER_MESSAGE = (
    "No teacher: pass teacher=..., or set LMTX_TEACHER_URL (or OPENAI_BASE_URL) to an OpenAI-compatible endpoint "
    "and LMTX_TEACHER_MODEL to its model name, or fetch the embedded local model with `st-lmtx fetch-model` "
    "(and `pip install 'st-lmtx[local]'`)."
)


def make_teacher(
    spec: str,
    *,
    model: str | None = None,
    labels: LabelSet | None = None,
    documents: DocumentSet | None = None,
    **kwargs: Any,
) -> Teacher:
    """``spec``: an http(s) URL (or several, comma-separated) for `OpenAITeacher`; ``local`` for the
    in-process llama.cpp scorer; ``local-server`` for llama.cpp's server started for you; ``local:NAME`` /
    ``local-server:NAME`` for either with the fetched model ``NAME`` of
    `MODELS` (e.g. ``local:qwen2.5-coder-0.5b``; plain ``local`` is the
    default model, or the ``.gguf`` path in ``model``); a path ending in ``.gguf`` for the in-process teacher
    with that model; ``oracle`` / ``oracle:0.2`` / ``oracle:0.4:yes`` for ground truth (with a flipped
    fraction, and optionally which answers may flip: ``both``, ``yes`` or ``no``, see `OracleTeacher`;
    needs ``labels`` and ``documents`` with ground truth); ``batch:DIR`` for `BatchTeacher` (``model`` names the
    model the batch engine serves)."""
    from st_lmtx.teacher.endpoints import check_url
    from st_lmtx.teacher.llama_cpp_teacher import LlamaCppTeacher
    from st_lmtx.teacher.local import LocalTeacher
    from st_lmtx.teacher.openai_teacher import OpenAITeacher
    from st_lmtx.teacher.oracle import OracleTeacher

    submit = kwargs.pop("submit", None)
    if submit and not spec.startswith("batch:"):
        raise TeacherConfigError("--submit is for a batch teacher: --teacher batch:DIR --teacher-model NAME")
    if spec.startswith(("http://", "https://")):
        urls = [u.strip() for u in spec.split(",") if u.strip()]
        for url in urls:
            check_url(url)
        name = model or os.environ.get(TEACHER_MODEL_ENV) or _discover_model(urls[0], kwargs.get("api_key"))
        kwargs = {k: v for k, v in kwargs.items() if k not in _IN_PROCESS_ONLY}
        return OpenAITeacher(name, base_url=urls, **kwargs)
    if spec.startswith("batch:"):
        from st_lmtx.teacher.batch_files import BatchTeacher

        name = model or os.environ.get(TEACHER_MODEL_ENV)
        if not name or not spec[len("batch:") :]:
            raise TeacherConfigError(
                "a batch teacher needs a folder and the model the batch engine serves: --teacher batch:DIR "
                "--teacher-model NAME"
            )
        kwargs = {k: v for k, v in kwargs.items() if k not in _IN_PROCESS_ONLY + _RATE_LIMITS}
        return BatchTeacher(name, spec[len("batch:") :], submit=submit, **kwargs)
    if spec == "oracle" or spec.startswith("oracle:"):
        flip, towards = _parse_oracle(spec)
        if labels is None or documents is None:
            raise TeacherConfigError("the oracle teacher needs the labels and the documents with ground truth")
        _warn_unlimited(spec, kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k in _TEACHER_COMMON}
        return OracleTeacher(labels, documents, flip_fraction=flip, flip_towards=towards, **kwargs)
    kind, colon, name = spec.partition(":")
    if kind in ("local", "local-server") or spec.endswith(".gguf"):
        if kind in ("local", "local-server") and colon:
            path = _registered_model(spec, name, model)
        else:
            path = spec if spec.endswith(".gguf") else model
        if kind == "local-server":  # an endpoint teacher too: rate limits apply, though rarely wanted
            return LocalTeacher(model_path=path, **{k: v for k, v in kwargs.items() if k not in _IN_PROCESS_ONLY})
        # The in-process scorer always grades and has no HTTP settings.
        _warn_unlimited(spec, kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in _ENDPOINT_ONLY + _RATE_LIMITS}
        return LlamaCppTeacher(model_path=path, **kwargs)
    raise TeacherConfigError(
        f"unknown teacher {spec!r}: use an http(s) URL, local, local-server, local:NAME, "
        "local-server:NAME, a .gguf path, batch:DIR or oracle"
    )


def _registered_model(spec: str, name: str, model: str | None) -> Path:
    """The fetched file of model ``name`` of ``local:NAME`` / ``local-server:NAME``, or a TeacherConfigError
    that lists the known names or says how to fetch it."""
    if name not in MODELS:
        raise TeacherConfigError(f"unknown teacher model {name!r} in {spec!r}: known models are {', '.join(MODELS)}")
    if model:
        raise TeacherConfigError(f"{spec!r} names its model: give no .gguf path ({model!r}) with it")
    path = find_model(name)
    if path is None:
        raise TeacherConfigError(
            f"the teacher model {name!r} is not fetched (no complete {model_path(name)}): run "
            f"`st-lmtx fetch-model --model {name}`"
        )
    return path


def _parse_oracle(spec: str) -> tuple[float, str]:
    """``oracle[:FRACTION[:both|yes|no]]`` -> (flip fraction, flip direction)."""
    from st_lmtx.teacher.oracle import OracleTeacher

    parts = spec.split(":")
    directions = "|".join(OracleTeacher.FLIP_TOWARDS)
    usage = f"use oracle, oracle:FRACTION or oracle:FRACTION:{directions} (e.g. oracle:0.4:yes)"
    if len(parts) > 3:
        raise TeacherConfigError(f"bad oracle teacher {spec!r}: {usage}")
    try:
        flip = float(parts[1]) if len(parts) > 1 else 0.0
    except ValueError:
        raise TeacherConfigError(f"bad oracle teacher {spec!r}: {parts[1]!r} is not a fraction; {usage}") from None
    if not 0.0 <= flip <= 1.0:  # also rejects nan
        raise TeacherConfigError(f"bad oracle teacher {spec!r}: the flipped fraction must be in [0, 1]; {usage}")
    towards = parts[2] if len(parts) > 2 else "both"
    if towards not in OracleTeacher.FLIP_TOWARDS:
        raise TeacherConfigError(f"bad oracle teacher {spec!r}: {towards!r} is not a flip direction; {usage}")
    return flip, towards


def _warn_unlimited(spec: str, kwargs: dict[str, Any]) -> None:
    """Rate limits asked of a teacher that sends no requests are dropped, but not silently."""
    if kwargs.get("rpm") is not None or kwargs.get("tpm") is not None:
        logger.warning(
            "rate limits (rpm, tpm) apply to endpoint teachers' requests; the %r teacher sends none, so "
            "they are ignored",
            spec,
        )


def _discover_model(url: str, api_key: str | None) -> str:
    """The one model an endpoint serves (``GET /models``), when no name is given."""
    from st_lmtx.teacher.endpoints import redact_url, served_models

    models = served_models(url, api_key)
    if not models:
        raise TeacherConfigError(
            f"an endpoint teacher needs a model name: --teacher-model or {TEACHER_MODEL_ENV} "
            f"({redact_url(url)} lists no model at GET /models)"
        )
    if len(models) > 1:
        raise TeacherConfigError(
            f"{redact_url(url)} serves {len(models)} models: {', '.join(models)}; choose one with "
            f"--teacher-model or {TEACHER_MODEL_ENV}"
        )
    logger.info("Teacher model: %s (the one model %s lists)", models[0], redact_url(url))
    return models[0]


def default_teacher(**kwargs: Any) -> Teacher:
    """The teacher used when none is given: an endpoint from the environment (``LMTX_TEACHER_URL``, else the
    openai client's ``OPENAI_BASE_URL``), else the embedded local model when it is present, else an error
    that says how to give one."""
    for env in (TEACHER_URL_ENV, "OPENAI_BASE_URL"):
        if url := os.environ.get(env):
            logger.info("No teacher given: the endpoint in $%s", env)
            return make_teacher(url, **kwargs)
    if find_default_model() is not None:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise TeacherConfigError(NO_TEACHER_MESSAGE) from None
        return make_teacher("local", **kwargs)
    raise TeacherConfigError(NO_TEACHER_MESSAGE)


def build_teacher(
    args: TeacherArguments,
    cache: str | os.PathLike | None = None,
    labels: LabelSet | None = None,
    documents: DocumentSet | None = None,
    show_progress_bar: bool = True,
) -> Teacher:
    """The teacher `TeacherArguments` describe (the ``judge`` and ``train`` commands' teacher), on the
    answer cache at ``cache``, with ``args.import_judgments`` added to that cache first."""
    from st_lmtx.teacher.prompts import PromptTemplate

    kwargs: dict[str, Any] = {
        "cache": str(cache) if cache else None,
        "show_progress_bar": show_progress_bar,
        "logprobs": args.logprobs,
        "timeout": args.timeout,
        "prompt": PromptTemplate.named(args.prompt, max_doc_words=args.max_doc_words),
    }
    # Only what was given: the oracle and the in-process teacher warn that they ignore rate limits.
    for name, key in (
        ("concurrency", "concurrency"),
        ("memory_mb", "memory_mb"),
        ("teacher_memory_dir", "memory_dir"),
        ("rpm", "rpm"),
        ("tpm", "tpm"),
        ("submit", "submit"),
    ):
        if getattr(args, name) is not None:
            kwargs[key] = getattr(args, name)
    if args.teacher is None:
        teacher = default_teacher(model=args.teacher_model, **kwargs)
    else:
        teacher = make_teacher(args.teacher, model=args.teacher_model, labels=labels, documents=documents, **kwargs)
    try:
        for path in args.import_judgments:
            report = teacher.import_judgments(path)
            logger.info("%s: %d judgments, %d new to the cache", path, report.rows, report.added)
    except BaseException:
        teacher.close()
        raise
    return teacher
