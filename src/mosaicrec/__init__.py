"""mosaicrec: a multimodal recommender system, from raw media files to a running API.

The package is laid out as the pipeline: ``data`` → ``encoders`` → ``fusion`` → ``models`` →
``ranking`` → ``serving``, with ``evaluation`` beside it. A lower stage never imports a higher one.
"""

__version__ = "0.1.0"
