"""The LMTX trainer: the curriculum loop, one round, training, processes, the run's records and final folder.

Import `LMTXTrainer` from ``st_lmtx``; this package's modules are imported on their own so that
the light ones (`st_lmtx.trainer.records`) do not load torch.
"""
