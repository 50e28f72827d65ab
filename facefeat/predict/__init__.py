"""Feature prediction: batching, flip test, results."""

from facefeat.predict.predictor import FeaturePredictor, create_model
from facefeat.predict.result import FeatureResult

__all__ = ["FeaturePredictor", "FeatureResult", "create_model"]
