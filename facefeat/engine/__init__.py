"""Training, evaluation and export engines.

``train`` (the loop: ``train_one_epoch``, ``run_train``) with ``train_data`` (samples, loader,
val pairs), ``pretrain`` (fine-tuning's start: pretrained weights, head imprinting) and
``train_report`` (validator, train.log, train_result.json); ``checkpoint`` (format, save/load, RNG
state, exact resume), ``optim`` (AdamW groups, warm-up + cosine), ``evaluate``, ``verification``
and ``calibration`` (numpy only: the 10-fold LFW protocol, ROC / AUC / EER / TAR@FAR, operating
points), ``export``, ``distributed`` and ``runner`` (``Global.mode`` -> its runner). Modules here
that need torch import it lazily, so ``import facefeat.engine`` stays torch-free.
"""
