# A trainer worker: CUDA PyTorch 2.13 from the base image (its conda Python, 3.11 or 3.12:
# install.sh refuses any other), then ftserve's trainer extra with that torch kept in place.
#   docker build -f deploy/docker/trainer.Dockerfile -t ftserve-trainer .
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}
WORKDIR /src
# bubblewrap and WordNet: reinforcement fine-tuning grades in the worker (python graders, METEOR).
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap wordnet-base \
    && rm -rf /var/lib/apt/lists/*
# Dependencies first, from pyproject.toml alone (see api.Dockerfile).
COPY pyproject.toml README.md /src/
COPY deploy/docker/install.sh /src/deploy/docker/install.sh
RUN mkdir service trainer inference && touch service/__init__.py trainer/__init__.py inference/__init__.py \
    && deploy/docker/install.sh trainer /src deps && rm -rf /root/.cache
COPY . /src
RUN deploy/docker/install.sh trainer /src && rm -rf /root/.cache
RUN useradd --create-home --uid 10001 --user-group ftserve
USER 10001
ENV HOME=/home/ftserve FTSERVE_DATA_DIR=/data TMPDIR=/tmp HF_HOME=/data/hf FTSERVE_WORKER_HEALTH_PORT=8081 \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 8081
# SIGTERM: the running job saves its full state and goes back to the queue, then the worker exits.
STOPSIGNAL SIGTERM
CMD ["ftserve", "worker"]
