"""Training, evaluation and export engines.

``train`` (the loop: data, validator, report, ``train_one_epoch``, ``run_train``), ``checkpoint``
(format, save/load, RNG state, exact resume), ``optim`` (AdamW groups, warm-up + cosine),
``evaluate`` and ``verification`` (numpy only: the 10-fold LFW protocol, ROC / AUC / EER /
TAR@FAR), ``export``, ``distributed`` and ``runner`` (``Global.mode`` -> its runner). Modules here
that need torch import it lazily, so ``import facefeat.engine`` stays torch-free.
"""
