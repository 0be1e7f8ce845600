# The API: Litestar on uvicorn, with the validation and reconciler loops. No torch, no GPU.
#   docker build -f deploy/docker/api.Dockerfile -t ftserve-api .
# Python 3.11, the oldest the project supports and the one CI tests on.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm
FROM ${BASE_IMAGE}
WORKDIR /src
# bubblewrap: the sandbox of python graders; wordnet-base: the data of the METEOR metric.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap wordnet-base \
    && rm -rf /var/lib/apt/lists/*
# Dependencies first, from pyproject.toml alone (empty packages stand in for the source), so a
# code change reuses this layer instead of reinstalling every dependency.
COPY pyproject.toml README.md /src/
COPY deploy/docker/install.sh /src/deploy/docker/install.sh
RUN mkdir service trainer inference && touch service/__init__.py trainer/__init__.py inference/__init__.py \
    && deploy/docker/install.sh api /src deps && rm -rf /root/.cache
COPY . /src
RUN deploy/docker/install.sh api /src && rm -rf /root/.cache
RUN useradd --create-home --uid 10001 --user-group ftserve
USER 10001
# The root file system is read-only in Kubernetes: HOME and TMPDIR are volumes there.
ENV HOME=/home/ftserve TMPDIR=/tmp FTSERVE_HOST=0.0.0.0 FTSERVE_PORT=8000 FTSERVE_DATA_DIR=/home/ftserve/data \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 8000
# Migrations: `python3 /src/deploy/docker/migrate.py` (the pods' init container, under a lock).
CMD ["python3", "-m", "uvicorn", "--factory", "service.api.app:create_app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]
