"""st-lmtx: LMTX (an LLM as the teacher of a bi-encoder for zero-shot tagging) for sentence-transformers."""

from st_lmtx.calibration import calibrate
from st_lmtx.evaluation import LLMJudgedEvaluator, XMCEvaluator, xmc_metrics
from st_lmtx.evaluation.llm_judged_evaluator import judged_signals
from st_lmtx.files import RunFileError
from st_lmtx.inputs import DocumentSet, InputError, LabelSet, load_documents, load_labels, load_lfxmc
from st_lmtx.losses import LMTXTripletLoss
from st_lmtx.models import load_model
from st_lmtx.pseudo_labels import PseudoLabels, SelectionConfig, build_pseudo_label_dataset
from st_lmtx.recipes import RECIPES
from st_lmtx.shortlist import IndexConfig, LabelIndex, Shortlist, ShortlistMiner
from st_lmtx.tagger import LMTXTagger, Tag
from st_lmtx.teacher import (
    JudgmentCache,
    JudgmentsFileError,
    LlamaCppTeacher,
    LocalTeacher,
    OpenAITeacher,
    OracleTeacher,
    PromptTemplate,
    Teacher,
    TeacherBudgetExceeded,
    TeacherError,
    export_judgments,
    fetch_default_model,
    import_judgments,
    load_judgments,
)
from st_lmtx.trainer import LMTXArguments, LMTXTrainer

__version__ = "0.1.0"

__all__ = [
    "DocumentSet",
    "IndexConfig",
    "InputError",
    "JudgmentCache",
    "JudgmentsFileError",
    "LLMJudgedEvaluator",
    "LMTXArguments",
    "LMTXTagger",
    "LMTXTrainer",
    "LMTXTripletLoss",
    "LabelIndex",
    "LabelSet",
    "LlamaCppTeacher",
    "LocalTeacher",
    "OpenAITeacher",
    "OracleTeacher",
    "PromptTemplate",
    "PseudoLabels",
    "RECIPES",
    "RunFileError",
    "SelectionConfig",
    "Shortlist",
    "ShortlistMiner",
    "Tag",
    "Teacher",
    "TeacherBudgetExceeded",
    "TeacherError",
    "XMCEvaluator",
    "build_pseudo_label_dataset",
    "calibrate",
    "export_judgments",
    "fetch_default_model",
    "import_judgments",
    "judged_signals",
    "load_judgments",
    "load_documents",
    "load_labels",
    "load_lfxmc",
    "load_model",
    "xmc_metrics",
]
