"""The LLM teacher: judges (document, label) pairs during training only.

`OpenAITeacher` (any OpenAI-compatible endpoint), `LlamaCppTeacher` (llama.cpp in this process),
`LocalTeacher` (llama.cpp's server, started for you), `BatchTeacher` (an endpoint's model, by batch job) and
`OracleTeacher` (ground truth: an evaluation tool) share `Teacher`'s cache, budgets and usage counts.
"""

from st_lmtx.teacher.base import JudgeResult, Judgment, Teacher, TeacherUsage
from st_lmtx.teacher.batch_files import BatchTeacher, import_output, write_requests
from st_lmtx.teacher.budget import TeacherBudget
from st_lmtx.teacher.cache import JudgmentCache
from st_lmtx.teacher.factory import default_teacher, make_teacher
from st_lmtx.teacher.judgments import ImportReport, export_judgments, import_judgments, load_judgments
from st_lmtx.teacher.llama_cpp_teacher import LlamaCppTeacher
from st_lmtx.teacher.local import LocalTeacher
from st_lmtx.teacher.model_files import MODELS, fetch_default_model, fetch_model, find_default_model, find_model
from st_lmtx.teacher.openai_teacher import OpenAITeacher
from st_lmtx.teacher.oracle import OracleTeacher
from st_lmtx.teacher.prompts import PROMPTS, PromptTemplate, parse_verdict

__all__ = [
    "BatchTeacher",
    "MODELS",
    "PROMPTS",
    "ImportReport",
    "JudgeResult",
    "Judgment",
    "JudgmentCache",
    "LlamaCppTeacher",
    "LocalTeacher",
    "OpenAITeacher",
    "OracleTeacher",
    "PromptTemplate",
    "Teacher",
    "TeacherBudget",
    "TeacherUsage",
    "default_teacher",
    "export_judgments",
    "fetch_default_model",
    "fetch_model",
    "find_default_model",
    "find_model",
    "import_judgments",
    "import_output",
    "load_judgments",
    "make_teacher",
    "parse_verdict",
    "write_requests",
]
