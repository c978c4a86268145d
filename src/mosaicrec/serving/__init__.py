"""Serve stage: recommendations, similar items, search, new items, feedback and erasure over HTTP, as a
pipeline over an immutable snapshot (:mod:`~mosaicrec.serving.service`), with the API in
:mod:`~mosaicrec.serving.app` and its routes in :mod:`~mosaicrec.serving.routes`."""
