"""st-lmtx: LMTX (an LLM as the teacher of a bi-encoder for zero-shot tagging) for sentence-transformers.

What a script imports: the trainer and its arguments, the tagger, the teachers, the pipeline pieces (shortlists,
the teacher's verdicts, a loss's rows), the loss, the evaluators, the loaders, the judgments files, the run's
records and the errors. The names load on first use, so that ``st-lmtx --help`` and ``import st_lmtx`` do not
load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# The public names, each written once, by the module that defines it.
_EXPORTS = {
    "st_lmtx.trainer.lmtx_trainer": ("LMTXTrainer",),
    "st_lmtx.arguments": ("LMTXArguments", "RECIPES"),
    "st_lmtx.tagger": ("LMTXTagger", "Tag"),
    "st_lmtx.teacher.base": ("Teacher",),
    "st_lmtx.teacher.budget": ("TeacherBudget",),
    "st_lmtx.teacher.openai_teacher": ("OpenAITeacher",),
    "st_lmtx.teacher.llama_cpp_teacher": ("LlamaCppTeacher",),
    "st_lmtx.teacher.local": ("LocalTeacher",),
    "st_lmtx.teacher.oracle": ("OracleTeacher",),
    "st_lmtx.teacher.batch_files": ("BatchTeacher",),
    "st_lmtx.teacher.model_files": ("fetch_model",),
    "st_lmtx.teacher.judgments": ("export_judgments", "import_judgments", "load_judgments"),
    # The pieces of a sentence-transformers pipeline: shortlists -> the teacher's verdicts -> a loss's rows.
    "st_lmtx.shortlist": ("mine_shortlists",),
    "st_lmtx.teacher.generate": ("judge_shortlists",),
    "st_lmtx.pseudo_labels": ("build_lmtx_dataset", "build_distillation_dataset"),
    "st_lmtx.losses.lmtx_triplet_loss": ("LMTXTripletLoss",),
    "st_lmtx.evaluation.xmc_evaluator": ("XMCEvaluator",),
    "st_lmtx.evaluation.llm_judged_evaluator": ("LLMJudgedEvaluator",),
    "st_lmtx.inputs": ("load_labels", "load_documents", "load_lfxmc", "LabelSet", "DocumentSet"),
    "st_lmtx.trainer.records": ("RunRecord", "RoundRecord"),
    "st_lmtx.errors": (
        "LMTXError",
        "InputError",
        "ArgumentsError",
        "ModelLoadError",
        "TeacherConfigError",
        "JudgmentsFileError",
        "RunFileError",
        "CacheFileError",
        "CacheLockedError",
        "RunInUseError",
        "RunMismatchError",
        "TeacherError",
        "TeacherBudgetExceeded",
        "ModelFetchError",
        "NothingToTrainError",
        "BatchPending",
        "NotATaggerError",
    ),
}
_MODULE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE)


def __getattr__(name: str) -> Any:
    if name not in _MODULE:
        raise AttributeError(f"module 'st_lmtx' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE])
