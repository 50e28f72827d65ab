"""Training, evaluation and export engines.

``verification`` (numpy only) holds the face-verification metrics: the standard 10-fold LFW
accuracy protocol, ROC / AUC / EER / TAR@FAR and a ROC plot. Modules here that need torch import
it lazily, so ``import facefeat.engine`` stays torch-free.
"""
