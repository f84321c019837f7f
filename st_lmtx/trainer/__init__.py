"""The LMTX trainer: the curriculum loop, one round, training, processes, the run's records and final folder.

Import :class:`~st_lmtx.LMTXTrainer` from ``st_lmtx``; this package's modules are imported on their own so that
the light ones (:mod:`st_lmtx.trainer.records`) do not load torch.
"""
