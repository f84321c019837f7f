"""The LMTX trainer: its arguments, the run's state, one curriculum round, training, processes, the final folder."""

from st_lmtx.trainer.arguments import LMTXArguments
from st_lmtx.trainer.lmtx_trainer import CACHE_FILE, LMTXTrainer
from st_lmtx.trainer.run_state import STATE_FILE, RunState

__all__ = ["CACHE_FILE", "STATE_FILE", "LMTXArguments", "LMTXTrainer", "RunState"]
