"""The video encoder: sampled frames through an image encoder, pooled over time, beside the soundtrack
through an audio encoder.

A video's vector is ``[frames | soundtrack]``, each part L2-normalised, so both weigh the same in a cosine
(a video without sound has a zero soundtrack part). With ``content = "parts"`` (or ``"both"``) the encode
stage also gives the parts as their own content, ``<name>_frames`` and ``<name>_sound``, so a fusion or the
modality report can weigh pictures and sound apart. Decoding is PyAV's (FFmpeg inside its wheel), in a
sandboxed child process with limits (:mod:`.video_io`); the models run in this process.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mosaicrec.encoders.base import (Encoder, EncoderConfig, MediaError, create_encoder, l2_normalize, media_path,
                                     register_encoder)
from mosaicrec.encoders.video_io import AUDIO_RATE, Sandbox, VideoLimits
from mosaicrec.errors import ConfigError


class VideoConfig(EncoderConfig):
    frames: str = Field("efficientnet-lite0", description="image encoder for the sampled frames")
    audio: str | None = Field("yamnet", description="audio encoder for the soundtrack (None: pictures only)")
    max_frames: int = Field(8, ge=1, le=64, description="frames sampled per video: half evenly spread, half "
                            "at the largest scene changes")
    frame_size: int = Field(256, ge=32, le=1024, description="shorter side of a sampled frame before the "
                            "image encoder's own resizing")
    audio_seconds: float = Field(30.0, gt=0, le=600, description="soundtrack read from the start")
    batch_size: int = Field(4, ge=1, le=256, description="videos per model call")
    limits: VideoLimits = Field(default_factory=VideoLimits, description="what a video may be")
    content: Literal["fused", "parts", "both"] = Field(
        "fused", description="what the encode stage gives: the video vector, its parts (<name>_frames, "
        "<name>_sound), or both")


@register_encoder(default=True)
class VideoEncoder(Encoder):
    name = "video"
    modality = "video"
    version = "1"
    requires = (("av", "av (PyAV, FFmpeg inside its wheel)"),)
    description = ("sampled frames (image encoder, mean over time) + soundtrack (audio encoder); PyAV "
                   "decoding in a sandboxed process")
    config_class = VideoConfig
    output_fields = ("frames", "audio", "max_frames", "frame_size", "audio_seconds")

    def __init__(self, config: VideoConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.frames_encoder = create_encoder(self.config.frames)
        self.audio_encoder = create_encoder(self.config.audio) if self.config.audio else None
        if self.frames_encoder.modality != "image":
            raise ConfigError(f"video: frames = {self.config.frames!r} is a {self.frames_encoder.modality} encoder; "
                              "name an image encoder")
        if self.audio_encoder is not None and self.audio_encoder.modality != "audio":
            raise ConfigError(f"video: audio = {self.config.audio!r} is a {self.audio_encoder.modality} encoder; "
                              "name an audio encoder")
        self.sandbox = Sandbox(self.config.limits)

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.frames_encoder.dim + (self.audio_encoder.dim if self.audio_encoder else 0)

    def parts(self) -> dict[str, slice]:
        """Where each part lies in the vector: ``{"frames": …, "sound": …}``."""
        f = self.frames_encoder.dim
        out = {"frames": slice(0, f)}
        if self.audio_encoder is not None:
            out["sound"] = slice(f, f + self.audio_encoder.dim)
        return out

    def _fitted_fingerprint(self) -> str:
        # the parts' own versions change the vectors too
        keys = [self.frames_encoder.key] + ([self.audio_encoder.key] if self.audio_encoder else [])
        return hashlib.sha256("|".join(keys).encode()).hexdigest()[:8]

    def _load(self) -> None:
        self.frames_encoder.setup()
        if self.audio_encoder is not None:
            self.audio_encoder.setup()

    def decode(self, ref: str) -> tuple[list[Any], Any]:
        from PIL import Image

        path = media_path(ref)
        if not path.is_file():
            raise MediaError("file not found", path.name)
        video = self.sandbox.decode(str(path), self.config.max_frames, self.config.frame_size,
                                    self.config.audio_seconds if self.audio_encoder else None)
        frames = [self.frames_encoder.from_image(Image.fromarray(f)) for f in video.frames]
        wave = None
        if self.audio_encoder is not None and video.wave is not None and len(video.wave) >= AUDIO_RATE // 10:
            wave = self.audio_encoder.from_wave(video.wave, AUDIO_RATE)
        return frames, wave

    def forward(self, batch: list[tuple[list[Any], Any]]) -> np.ndarray:
        img = self.frames_encoder
        frames = [f for fs, _ in batch for f in fs]
        step = img.config.batch_size
        per_frame = l2_normalize(np.concatenate([img.forward(img.collate(frames[s:s + step]))
                                                 for s in range(0, len(frames), step)]))
        bounds = np.cumsum([0] + [len(fs) for fs, _ in batch])
        pooled = l2_normalize(np.stack([per_frame[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])]))
        if self.audio_encoder is None:
            return pooled
        sound = np.zeros((len(batch), self.audio_encoder.dim), np.float32)
        have = [i for i, (_, w) in enumerate(batch) if w is not None]
        if have:
            aud = self.audio_encoder
            sound[have] = l2_normalize(aud.forward(aud.collate([batch[i][1] for i in have])))
        return np.concatenate([pooled, sound], axis=1)

    def close(self) -> None:
        """Stop the decoding processes (they also end with this process)."""
        self.sandbox.close()


def split_parts(matrix: np.ndarray, mask: np.ndarray, parts: dict[str, slice]
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A video feature's parts as features of their own: part name → (normalised rows, mask of rows that
    have the part)."""
    out = {}
    for part, sl in parts.items():
        block = np.ascontiguousarray(matrix[:, sl])
        has = mask & (np.linalg.norm(block, axis=1) > 1e-6)
        out[part] = (l2_normalize(block) * has[:, None], has)
    return out
