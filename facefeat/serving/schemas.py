"""Request and result bodies of the HTTP service, in PaddleX's serving schema.

Every response is an envelope ``{"logId": str, "errorCode": int, "errorMsg": str, "result": ...}``;
``errorCode`` is 0 with ``errorMsg`` "Success" on success, and otherwise the HTTP status of the
response (PaddleX's convention), with ``result`` null and ``errorMsg`` saying what was wrong.

Images are base64 strings (optionally a ``data:image/...;base64,`` URL) or http(s) URLs.
"""

from __future__ import annotations

from typing import Generic, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

#: labels are shown to people and stored in the index's labels.json
MAX_LABEL_CHARS = 256


class _Body(BaseModel):
    # unknown fields are refused (a misspelt "topK" should not be silently ignored)
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# -- envelope -----------------------------------------------------------------------------------


class Envelope(BaseModel, Generic[T]):
    logId: str
    errorCode: int = 0
    errorMsg: str = "Success"
    result: Optional[T] = None


class ErrorEnvelope(BaseModel):
    logId: str
    errorCode: int
    errorMsg: str
    result: None = None


# -- face feature module ------------------------------------------------------------------------


class FeatureInferRequest(_Body):
    image: str = Field(description="an aligned face image: base64 (or a data URL) or an http(s) URL")
    model: Optional[str] = Field(None, description="a loaded zoo model; default: the pipeline's model")
    flip: bool = Field(False, description="add the mirror image's feature (flip test)")


class FeatureInferResult(BaseModel):
    feature: list[float]
    model: str
    dim: int


# -- gallery index ------------------------------------------------------------------------------


class ImageLabelPair(_Body):
    image: str = Field(description="base64 image (or data URL) or http(s) URL; one face per image")
    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS, description="the person's name")


class Rejected(BaseModel):
    index: int = Field(description="position of the image in imageLabelPairs")
    label: str
    reason: str


class BuildIndexRequest(_Body):
    imageLabelPairs: list[ImageLabelPair] = Field(min_length=1)
    indexType: Optional[str] = Field(None, description="FAISS: Flat (default), HNSW32, IVF; Milvus: FLAT, HNSW, IVF_FLAT")
    metricType: Optional[str] = Field(None, description="IP (default), COSINE or L2")


class BuildIndexResult(BaseModel):
    indexKey: str
    imageCount: int = Field(description="entries in the index")
    ids: list[int] = Field(description="ids assigned to the accepted images, in request order")
    rejected: list[Rejected] = Field(default_factory=list, description="images skipped (no face, several faces)")


class AddImagesToIndexRequest(_Body):
    imageLabelPairs: list[ImageLabelPair] = Field(min_length=1)
    indexKey: str


class AddImagesToIndexResult(BaseModel):
    imageCount: int = Field(description="entries in the index after the add")
    ids: list[int]
    rejected: list[Rejected] = Field(default_factory=list)


class RemoveImagesFromIndexRequest(_Body):
    ids: list[int] = Field(min_length=1)
    indexKey: str


class RemoveImagesFromIndexResult(BaseModel):
    imageCount: int = Field(description="entries in the index after the removal")


class IndexEntry(BaseModel):
    id: int
    label: str


class IndexInfoResult(BaseModel):
    indexKey: str
    imageCount: int
    model: Optional[str]
    dim: int
    backend: str
    metricType: str
    indexType: str
    entries: list[IndexEntry]


class IndexSummary(BaseModel):
    indexKey: str
    imageCount: int
    model: Optional[str] = None


class IndexListResult(BaseModel):
    indexes: list[IndexSummary]


# -- recognition --------------------------------------------------------------------------------


class InferRequest(_Body):
    image: str = Field(description="a photo: base64 (or data URL) or http(s) URL")
    indexKey: Optional[str] = Field(None, description="gallery to search; without it faces are only detected")
    detThreshold: Optional[float] = Field(None, ge=0.0, le=1.0)
    recThreshold: Optional[float] = Field(None, description="minimum top-1 score (IP/COSINE) to name a face")
    topk: Optional[int] = Field(None, ge=1, le=100)
    visualize: Optional[bool] = Field(None, description="also return the annotated image (base64 JPEG)")


class RecResult(BaseModel):
    label: str
    score: float


class Face(BaseModel):
    bbox: list[float] = Field(description="[x0, y0, x1, y1] in pixels")
    score: float = Field(description="detection score")
    recResults: list[RecResult] = Field(description="top-k gallery matches, best first; empty when unknown")


class InferResult(BaseModel):
    faces: list[Face]
    image: Optional[str] = None


class HealthResult(BaseModel):
    status: str
    models: list[str]
    indexBackend: str
