"""st-lmtx: LMTX (an LLM as the teacher of a bi-encoder for zero-shot tagging) for sentence-transformers.

What a script imports: the trainer and its arguments, the tagger, the teachers, the loss, the evaluators, the
loaders, the judgments files, the run's records and the errors. The names load on first use, so that
``st-lmtx --help`` and ``import st_lmtx`` do not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# name -> the module that defines it
_EXPORTS = {
    "LMTXTrainer": "st_lmtx.trainer.lmtx_trainer",
    "LMTXArguments": "st_lmtx.arguments",
    "RECIPES": "st_lmtx.arguments",
    "LMTXTagger": "st_lmtx.tagger",
    "Tag": "st_lmtx.tagger",
    "Teacher": "st_lmtx.teacher.base",
    "TeacherBudget": "st_lmtx.teacher.budget",
    "OpenAITeacher": "st_lmtx.teacher.openai_teacher",
    "LlamaCppTeacher": "st_lmtx.teacher.llama_cpp_teacher",
    "LocalTeacher": "st_lmtx.teacher.local",
    "OracleTeacher": "st_lmtx.teacher.oracle",
    "fetch_model": "st_lmtx.teacher.model_files",
    "export_judgments": "st_lmtx.teacher.judgments",
    "import_judgments": "st_lmtx.teacher.judgments",
    "load_judgments": "st_lmtx.teacher.judgments",
    "LMTXTripletLoss": "st_lmtx.losses.lmtx_triplet_loss",
    "XMCEvaluator": "st_lmtx.evaluation.xmc_evaluator",
    "LLMJudgedEvaluator": "st_lmtx.evaluation.llm_judged_evaluator",
    "load_labels": "st_lmtx.inputs",
    "load_documents": "st_lmtx.inputs",
    "load_lfxmc": "st_lmtx.inputs",
    "RunRecord": "st_lmtx.trainer.records",
    "RoundRecord": "st_lmtx.trainer.records",
    "LMTXError": "st_lmtx.errors",
    "InputError": "st_lmtx.errors",
    "ArgumentsError": "st_lmtx.errors",
    "ModelLoadError": "st_lmtx.errors",
    "TeacherConfigError": "st_lmtx.errors",
    "JudgmentsFileError": "st_lmtx.errors",
    "RunFileError": "st_lmtx.errors",
    "CacheFileError": "st_lmtx.errors",
    "CacheLockedError": "st_lmtx.errors",
    "RunInUseError": "st_lmtx.errors",
    "RunMismatchError": "st_lmtx.errors",
    "TeacherError": "st_lmtx.errors",
    "TeacherBudgetExceeded": "st_lmtx.errors",
    "ModelFetchError": "st_lmtx.errors",
    "NothingToTrainError": "st_lmtx.errors",
    "BatchPending": "st_lmtx.errors",
    "BatchTeacher": "st_lmtx.teacher.batch_files",
    "NotATaggerError": "st_lmtx.errors",
}

__all__ = [
    "BatchPending",
    "BatchTeacher",
    "ArgumentsError",
    "CacheFileError",
    "CacheLockedError",
    "InputError",
    "JudgmentsFileError",
    "LLMJudgedEvaluator",
    "LMTXArguments",
    "LMTXError",
    "LMTXTagger",
    "LMTXTrainer",
    "LMTXTripletLoss",
    "LlamaCppTeacher",
    "LocalTeacher",
    "ModelFetchError",
    "ModelLoadError",
    "NotATaggerError",
    "NothingToTrainError",
    "OpenAITeacher",
    "OracleTeacher",
    "RECIPES",
    "RoundRecord",
    "RunFileError",
    "RunInUseError",
    "RunMismatchError",
    "RunRecord",
    "Tag",
    "Teacher",
    "TeacherBudget",
    "TeacherBudgetExceeded",
    "TeacherConfigError",
    "TeacherError",
    "XMCEvaluator",
    "export_judgments",
    "fetch_model",
    "import_judgments",
    "load_documents",
    "load_judgments",
    "load_labels",
    "load_lfxmc",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'st_lmtx' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from st_lmtx.arguments import RECIPES, LMTXArguments
    from st_lmtx.errors import (
        ArgumentsError,
        BatchPending,
        CacheFileError,
        CacheLockedError,
        InputError,
        JudgmentsFileError,
        LMTXError,
        ModelFetchError,
        ModelLoadError,
        NotATaggerError,
        NothingToTrainError,
        RunFileError,
        RunInUseError,
        RunMismatchError,
        TeacherBudgetExceeded,
        TeacherConfigError,
        TeacherError,
    )
    from st_lmtx.evaluation.llm_judged_evaluator import LLMJudgedEvaluator
    from st_lmtx.evaluation.xmc_evaluator import XMCEvaluator
    from st_lmtx.inputs import load_documents, load_labels, load_lfxmc
    from st_lmtx.losses.lmtx_triplet_loss import LMTXTripletLoss
    from st_lmtx.tagger import LMTXTagger, Tag
    from st_lmtx.teacher.base import Teacher
    from st_lmtx.teacher.batch_files import BatchTeacher
    from st_lmtx.teacher.budget import TeacherBudget
    from st_lmtx.teacher.judgments import export_judgments, import_judgments, load_judgments
    from st_lmtx.teacher.llama_cpp_teacher import LlamaCppTeacher
    from st_lmtx.teacher.local import LocalTeacher
    from st_lmtx.teacher.model_files import fetch_model
    from st_lmtx.teacher.openai_teacher import OpenAITeacher
    from st_lmtx.teacher.oracle import OracleTeacher
    from st_lmtx.trainer.lmtx_trainer import LMTXTrainer
    from st_lmtx.trainer.records import RoundRecord, RunRecord
