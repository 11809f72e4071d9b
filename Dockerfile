# TumorLens: one image, two commands (the dashboard by default, or the REST API).
#
#   docker build -t tumorlens .
#   docker run --rm -p 8501:8501 tumorlens                      # Streamlit dashboard
#   docker run --rm -p 8000:8000 tumorlens make api             # REST API
#   docker run --rm -p 8000:8000 -e API_TOKEN=change-me tumorlens make api
#
# Installed through the same requirements files and `make setup` target that CI runs,
# and run as an unprivileged user. Mount datasets read-only and point
# TUMORLENS_DATA_DIR at them; mount another models folder and set API_MODELS_DIR to
# serve other bundles.
FROM python:3.11-slim

# make runs the Makefile targets; libglib2.0-0 and libgomp1 are runtime libraries of
# OpenCV and TensorFlow that the slim image lacks.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends make libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tumorlens
WORKDIR /app
RUN chown tumorlens:tumorlens /app
USER tumorlens

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MPLCONFIGDIR=/tmp/matplotlib \
    API_PORT=8000 \
    PORT=8501

# Dependencies first, so code changes do not reinstall them (a cached layer).
COPY --chown=tumorlens:tumorlens Makefile requirements.txt requirements-dev.txt ./
RUN make setup PYTHON=python3

COPY --chown=tumorlens:tumorlens . .

EXPOSE 8501 8000
CMD ["make", "app"]
