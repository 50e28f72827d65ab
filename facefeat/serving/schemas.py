"""Request and result bodies of the HTTP service, in PaddleX's serving schema.

Every response is an envelope ``{"logId": str, "errorCode": int, "errorMsg": str, "result": ...}``;
``errorCode`` is 0 with ``errorMsg`` "Success" on success, and otherwise the HTTP status of the
response (PaddleX's convention), with ``result`` null and ``errorMsg`` saying what was wrong.

Images are base64 strings (optionally a ``data:image/...;base64,`` URL) or http(s) URLs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, Literal, Optional, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from facefeat.errors import InputError
from facefeat.index.types import parse_index_type

T = TypeVar("T")

#: positions of a request's images already enrolled for that person (not added again; their id is the existing sample's)
_DUP_DOC = "positions (0-based) of images already in the gallery for that person: not added again, id = the existing sample"
#: labels are shown to people and stored in the gallery
MAX_LABEL_CHARS = 256
MAX_INDEX_NAME_CHARS = 100
#: index parameters a client may ask for (HNSW's M costs ~8*M bytes per face and link level)
MAX_HNSW_M = 64
MAX_IVF_NLIST = 65536
MAX_ID = 2**53 - 1  # exact in every JSON implementation
METRICS = ("IP", "COSINE", "L2")


def _ci(word: str) -> str:
    """``word`` as a case-insensitive JSON-Schema regex (JSON Schema has no flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


_M = "([4-9]|[1-5][0-9]|6[0-4])"  # HNSW M: 4..64
_NLIST = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-6])"  # 1..65536
INDEX_TYPE_PATTERN = (f"^({_ci('FLAT')}|{_ci('IVF_FLAT')}|{_ci('IVFFLAT')}|{_ci('IVF')}({_NLIST}(,{_ci('FLAT')})?)?"
                      f"|{_ci('HNSW')}({_M}(,{_ci('FLAT')})?)?)$")
METRIC_PATTERN = "^(" + "|".join(_ci(m) for m in METRICS) + ")$"


def _integral(v):
    """JSON Schema counts 3.0 as an integer: accept it as 3 (but never true or "3")."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


Threshold = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Id = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_integral)]
TopK = Annotated[int, Field(ge=1, le=100), BeforeValidator(_integral)]
#: a false-accept (1:1) or false-positive-identification (1:N) rate choosing a calibrated operating point
Rate = Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)]
#: a recognition threshold: a number, or "auto" (the model's calibrated operating point)
RecThreshold = Union[Threshold, Literal["auto"]]
#: enrolment quality policy (facefeat.vision.quality); off by default, so PaddleX clients are unchanged
QualityPolicyName = Literal["off", "standard", "strict"]
_QUALITY_DOC = ("enrolment quality policy: off (default), standard or strict; an image that fails it is "
                "refused with the reason, like an image without a face")


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
    indexName: Optional[str] = Field(None, min_length=1, max_length=MAX_INDEX_NAME_CHARS,
                                     description="a readable name for the gallery (facefeat; the web page shows "
                                                 "it instead of the key)")
    quality: Optional[QualityPolicyName] = Field(None, description=_QUALITY_DOC)
    indexType: Optional[str] = Field(None, max_length=16, json_schema_extra={"pattern": INDEX_TYPE_PATTERN},
                                     description=(
        f"FAISS: Flat (default), HNSW<M> (M 4..{MAX_HNSW_M}), IVF or IVF<nlist>[,Flat] (nlist 1..{MAX_IVF_NLIST}); "
        "Milvus: FLAT, HNSW, IVF_FLAT"))
    metricType: Optional[str] = Field(None, max_length=8, json_schema_extra={"pattern": METRIC_PATTERN},
                                      description="IP (default), COSINE or L2")

    @field_validator("indexType")
    @classmethod
    def _index_type(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:  # the one parser of index types (the pattern above only documents it)
            t = parse_index_type(v, max_m=MAX_HNSW_M, max_nlist=MAX_IVF_NLIST)
        except InputError:
            t = None
        if t is None or (t.M is not None and t.M < 4):
            raise ValueError(f"indexType must be Flat, HNSW<M> (M 4..{MAX_HNSW_M}), IVF or IVF<nlist>[,Flat] "
                             f"(nlist 1..{MAX_IVF_NLIST}), or Milvus' FLAT, HNSW, IVF_FLAT")
        return v

    @field_validator("metricType")
    @classmethod
    def _metric(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.fullmatch(METRIC_PATTERN, v):
            raise ValueError("metricType must be IP, COSINE or L2")
        return v if v is None else v.upper()

    @field_validator("indexName")
    @classmethod
    def _index_name(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        v = v.strip()
        if not v or any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("indexName must be readable text: not blank, no control characters")
        return v


class BuildIndexResult(BaseModel):
    indexKey: str
    indexName: Optional[str] = Field(None, description="the name given at build time, if any")
    imageCount: int = Field(description="entries in the index")
    ids: list[int] = Field(description="the id of each pair, in request order (a request with an image "
                                       "without a usable face is refused as a whole, so ids never shift)")
    duplicates: Optional[list[int]] = Field(None, description=_DUP_DOC)


class AddImagesToIndexRequest(_Body):
    imageLabelPairs: list[ImageLabelPair] = Field(min_length=1)
    indexKey: str
    quality: Optional[QualityPolicyName] = Field(None, description=_QUALITY_DOC)


class AddImagesToIndexResult(BaseModel):
    imageCount: int = Field(description="entries in the index after the add")
    ids: list[int] = Field(description="the id of each pair, in request order")
    duplicates: Optional[list[int]] = Field(None, description=_DUP_DOC)


class RemoveImagesFromIndexRequest(_Body):
    ids: list[Id] = Field(max_length=10000, description="ids to remove; an empty list removes nothing (200, as PaddleX)")
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
    indexName: Optional[str] = Field(None, description="the name given at build time, if any")
    imageCount: int
    model: Optional[str]
    dim: int
    backend: str
    metricType: str
    indexType: str
    entries: list[IndexEntry]


class IndexSummary(BaseModel):
    indexKey: str
    indexName: Optional[str] = Field(None, description="the name given at build time, if any")
    imageCount: int
    model: Optional[str] = None


class IndexListResult(BaseModel):
    indexes: list[IndexSummary]


# -- recognition --------------------------------------------------------------------------------


class InferRequest(_Body):
    image: str = Field(description="a photo: base64 (or data URL) or http(s) URL")
    indexKey: Optional[str] = Field(None, description="gallery to search; without it faces are only detected")
    detThreshold: Optional[Threshold] = None
    recThreshold: Optional[RecThreshold] = Field(None, description=(
        "minimum top-1 score (IP/COSINE) to name a face, or auto (the model's calibrated 1:N point); "
        "default: the server's (auto)"))
    far: Optional[Rate] = Field(None, description="use the model's calibrated 1:1 threshold at this FAR (e.g. 0.001)")
    fpir: Optional[Rate] = Field(None, description="use the model's calibrated 1:N threshold at this FPIR (e.g. 0.01)")
    perPerson: Optional[bool] = Field(False, description="top-k people (each one's best sample, with sampleIds) "
                                                         "instead of top-k gallery images")
    topk: Optional[TopK] = None
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
    sampleIds: Optional[list[int]] = Field(None, description="with perPerson: the best sample id of each person")


class InferResult(BaseModel):
    faces: list[Face]
    image: Optional[str] = None
    threshold: Optional[float] = Field(None, description="the recognition threshold that was used")
    operatingPoint: Optional[dict[str, Any]] = Field(None, description=(
        "which threshold was used: source (fixed | calibrated | uncalibrated default), operating_point "
        "(fixed, far_1e-03, fpir_1e-02, ...), the measured rates and the data they came from"))
    facesCapped: bool = Field(False, description=(
        "the image has at least max_faces faces: only the largest max_faces were processed"))


# -- verification -------------------------------------------------------------------------------


class VerifyRequest(_Body):
    image1: str = Field(description="a photo: base64 (or data URL) or http(s) URL; its largest face is used")
    image2: Optional[str] = Field(None, description="the second photo (or give indexKey + label)")
    indexKey: Optional[str] = Field(None, description="a gallery index, to verify against a person in it")
    label: Optional[str] = Field(None, min_length=1, max_length=MAX_LABEL_CHARS,
                                 description="the gallery person to verify against (with indexKey)")
    recThreshold: Optional[RecThreshold] = Field(None, description="a number, or auto (the model's calibrated "
                                                                   "1:1 point, FAR 1e-3); default auto")
    far: Optional[Rate] = Field(None, description="use the model's calibrated 1:1 threshold at this FAR")
    detThreshold: Optional[Threshold] = None


class VerifyResult(BaseModel):
    verified: bool
    score: float = Field(description="cosine similarity (a person: the best over their samples)")
    threshold: float
    far: Optional[float] = Field(None, description="the false accept rate measured at this threshold, if calibrated")
    operatingPoint: dict[str, Any]
    faces: list[dict[str, Any]] = Field(description="each side: the face used (box, score) and the other faces")


# -- people -------------------------------------------------------------------------------------


class Person(BaseModel):
    label: str
    sampleCount: int
    sampleIds: list[int]


class PersonsResult(BaseModel):
    indexKey: str
    personCount: int
    imageCount: int
    persons: list[Person]


class PersonRemoveRequest(_Body):
    indexKey: str
    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)


class PersonRemoveResult(BaseModel):
    label: str
    removed: list[int] = Field(description="the ids of the samples removed")
    imageCount: int


class PersonRenameRequest(_Body):
    indexKey: str
    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    newLabel: str = Field(min_length=1, max_length=MAX_LABEL_CHARS, description="merged into that person if it exists")


class PersonRenameResult(BaseModel):
    label: str
    newLabel: str
    renamed: int


class PersonAddRequest(_Body):
    indexKey: str
    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    images: list[str] = Field(min_length=1, description="base64 images (or data URLs / http(s) URLs), one face each")
    quality: Optional[QualityPolicyName] = Field(None, description=_QUALITY_DOC)


class PersonAddResult(BaseModel):
    label: str
    ids: list[int] = Field(description="the id of each image, in request order")
    imageCount: int
    duplicates: Optional[list[int]] = Field(None, description=_DUP_DOC)


class HealthResult(BaseModel):
    status: str
    models: list[str]
    indexBackend: str
    runtime: dict = Field(default_factory=dict, description="backend, precision and CPU features in use")
    auth: bool = Field(False, description="true when the other endpoints need an API key")
