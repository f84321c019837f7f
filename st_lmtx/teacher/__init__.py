"""The LLM teacher: judges (document, label) pairs during training only."""

from st_lmtx.teacher.base import (
    JudgeResult,
    Judgment,
    Teacher,
    TeacherBudgetExceeded,
    TeacherError,
    TeacherUsage,
)
from st_lmtx.teacher.cache import CacheFileError, JudgmentCache
from st_lmtx.teacher.factory import default_teacher, make_teacher
from st_lmtx.teacher.judgments import (
    ImportReport,
    JudgmentsFileError,
    export_judgments,
    import_judgments,
    load_judgments,
)
from st_lmtx.teacher.llama_cpp_teacher import LlamaCppTeacher
from st_lmtx.teacher.local import LlamaServer, LocalTeacher
from st_lmtx.teacher.model_files import MODELS, fetch_default_model, fetch_model, find_default_model, find_model
from st_lmtx.teacher.openai_teacher import OpenAITeacher
from st_lmtx.teacher.oracle import OracleTeacher
from st_lmtx.teacher.prompts import (
    COMPACT_PROMPT,
    LISTWISE_PROMPT,
    PAPER_PROMPT,
    PROMPTS,
    PromptTemplate,
    parse_listwise,
    parse_verdict,
)

__all__ = [
    "COMPACT_PROMPT",
    "ImportReport",
    "JudgmentsFileError",
    "PROMPTS",
    "export_judgments",
    "import_judgments",
    "load_judgments",
    "JudgeResult",
    "Judgment",
    "CacheFileError",
    "JudgmentCache",
    "LISTWISE_PROMPT",
    "MODELS",
    "LlamaCppTeacher",
    "LlamaServer",
    "LocalTeacher",
    "OpenAITeacher",
    "OracleTeacher",
    "PAPER_PROMPT",
    "PromptTemplate",
    "Teacher",
    "TeacherBudgetExceeded",
    "TeacherError",
    "TeacherUsage",
    "default_teacher",
    "fetch_default_model",
    "fetch_model",
    "find_default_model",
    "find_model",
    "make_teacher",
    "parse_listwise",
    "parse_verdict",
]
