"""Face detection (YuNet), alignment (5-point similarity onto the ArcFace template, or PaddleX's
box crop) and drawing. Torch-free: OpenCV and numpy only."""

from facefeat.vision.align import ARCFACE_TEMPLATE, align, align_face, crop_face, similarity_transform
from facefeat.vision.detector import LANDMARK_NAMES, Detection, YuNetDetector, yunet_model_path
from facefeat.vision.draw import draw_faces

__all__ = [
    "ARCFACE_TEMPLATE",
    "Detection",
    "LANDMARK_NAMES",
    "YuNetDetector",
    "align",
    "align_face",
    "crop_face",
    "draw_faces",
    "similarity_transform",
    "yunet_model_path",
]
