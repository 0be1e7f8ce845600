# An inference server: vLLM's image (Python 3.12), plus ftserve's storage LoRA resolver (a vLLM
# plugin). install.sh adds ftserve without changing any package the image ships.
#   docker build -f deploy/docker/inference.Dockerfile -t ftserve-inference .
ARG BASE_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${BASE_IMAGE}
WORKDIR /src
# Dependencies first, from pyproject.toml alone (see api.Dockerfile).
COPY pyproject.toml README.md /src/
COPY deploy/docker/install.sh /src/deploy/docker/install.sh
RUN mkdir service trainer inference && touch service/__init__.py trainer/__init__.py inference/__init__.py \
    && deploy/docker/install.sh inference /src deps && rm -rf /root/.cache
COPY . /src
RUN deploy/docker/install.sh inference /src && rm -rf /root/.cache
RUN useradd --create-home --uid 10001 --user-group ftserve
USER 10001
# vLLM and its kernels cache compiled code under these: volumes in Kubernetes (read-only root).
ENV HOME=/home/ftserve FTSERVE_DATA_DIR=/data FTSERVE_ADAPTER_CACHE_DIR=/data/adapter-cache TMPDIR=/tmp \
    HF_HOME=/data/hf VLLM_CACHE_ROOT=/data/vllm-cache TRITON_CACHE_DIR=/data/triton-cache PYTHONDONTWRITEBYTECODE=1
EXPOSE 8100
ENTRYPOINT ["ftserve", "inference", "--host", "0.0.0.0", "--port", "8100"]
# The base model is chosen per Deployment: `--base-model NAME` (a catalogue name).
CMD ["--base-model", "tiny-chat"]
