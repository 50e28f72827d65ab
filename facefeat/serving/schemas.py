"""Request and result bodies of the HTTP service, in PaddleX's serving schema.

Every response is an envelope ``{"logId": str, "errorCode": int, "errorMsg": str, "result": ...}``;
``errorCode`` is 0 with ``errorMsg`` "Success" on success, and otherwise the HTTP status of the
response (PaddleX's convention), with ``result`` null and ``errorMsg`` saying what was wrong.

Images are base64 strings (optionally a ``data:image/...;base64,`` URL) or http(s) URLs.
"""

from __future__ import annotations

import re
from typing import Annotated, Generic, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")

#: labels are shown to people and stored in the index's labels.json
MAX_LABEL_CHARS = 256
#: index parameters a client may ask for (HNSW's M costs ~8*M bytes per face and link level)
MAX_HNSW_M = 64
MAX_IVF_NLIST = 65536
MAX_ID = 2**62
_INDEX_TYPE = re.compile(r"(FLAT|IVF|IVF_FLAT|IVFFLAT|HNSW)|IVF(\d{1,6})(,FLAT)?|HNSW(\d{1,3})(,FLAT)?")
METRICS = ("IP", "COSINE", "L2")

Threshold = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Id = Annotated[int, Field(ge=0, le=MAX_ID)]


class _Body(BaseModel):
    # strict types (``"ids": [true]`` or ``["0"]`` is a 422, not id 1 or 0); unknown fields are
    # accepted and ignored, as PaddleX does (the service logs each unknown name once)
    model_config = ConfigDict(extra="allow", strict=True, protected_namespaces=())


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


class BuildIndexRequest(_Body):
    imageLabelPairs: list[ImageLabelPair] = Field(min_length=1)
    indexType: Optional[str] = Field(None, max_length=16, description=(
        f"FAISS: Flat (default), HNSW<M> (M 4..{MAX_HNSW_M}), IVF or IVF<nlist> (1..{MAX_IVF_NLIST}); "
        "Milvus: FLAT, HNSW, IVF_FLAT"))
    metricType: Optional[str] = Field(None, max_length=8, description="IP (default), COSINE or L2")

    @field_validator("indexType")
    @classmethod
    def _index_type(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        m = _INDEX_TYPE.fullmatch(v.strip().upper())
        if not m:
            raise ValueError("indexType must be Flat, HNSW<M>, IVF, IVF<nlist>[,Flat] (or Milvus' FLAT, HNSW, IVF_FLAT)")
        if m.group(2) and not 1 <= int(m.group(2)) <= MAX_IVF_NLIST:
            raise ValueError(f"IVF nlist must be in 1..{MAX_IVF_NLIST}")
        if m.group(4) and not 4 <= int(m.group(4)) <= MAX_HNSW_M:
            raise ValueError(f"HNSW M must be in 4..{MAX_HNSW_M}")
        return v.strip()

    @field_validator("metricType")
    @classmethod
    def _metric(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v.strip().upper() not in METRICS:
            raise ValueError("metricType must be IP, COSINE or L2")
        return v if v is None else v.strip().upper()


class BuildIndexResult(BaseModel):
    indexKey: str
    imageCount: int = Field(description="entries in the index")
    ids: list[int] = Field(description="the id of each pair, in request order (a request with an image "
                                       "without a usable face is refused as a whole, so ids never shift)")


class AddImagesToIndexRequest(_Body):
    imageLabelPairs: list[ImageLabelPair] = Field(min_length=1)
    indexKey: str


class AddImagesToIndexResult(BaseModel):
    imageCount: int = Field(description="entries in the index after the add")
    ids: list[int] = Field(description="the id of each pair, in request order")


class RemoveImagesFromIndexRequest(_Body):
    ids: list[Id] = Field(min_length=1, max_length=10000)
    indexKey: str


class RemoveImagesFromIndexResult(BaseModel):
    imageCount: int = Field(description="entries in the index after the removal")
    removed: list[int] = Field(default_factory=list, description="ids that were removed")
    missing: list[int] = Field(default_factory=list, description="ids that were not in the index (nothing to do)")


class DeleteIndexRequest(_Body):
    indexKey: str


class DeleteIndexResult(BaseModel):
    indexKey: str
    deleted: bool


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
    detThreshold: Optional[Threshold] = None
    recThreshold: Optional[Threshold] = Field(None, description="minimum top-1 score (IP/COSINE) to name a face")
    topk: Optional[int] = Field(None, ge=1, le=100)
    hammingRadius: Optional[float] = Field(None, allow_inf_nan=False,
                                           description="PaddleX's binary-index field; accepted and unused")
    visualize: Optional[bool] = Field(True, description="also return the annotated image (base64 JPEG); "
                                                        "default true, as PaddleX")


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
    runtime: dict = Field(default_factory=dict, description="backend, precision and CPU features in use")
    auth: bool = Field(False, description="true when the other endpoints need an API key")
