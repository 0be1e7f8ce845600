# An inference server: vLLM's image, plus ftserve's storage LoRA resolver (a vLLM plugin).
#   docker build -f deploy/docker/inference.Dockerfile -t ftserve-inference .
ARG BASE_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${BASE_IMAGE}
WORKDIR /src
COPY . /src
RUN deploy/docker/install.sh inference /src && rm -rf /root/.cache
ENV FTSERVE_DATA_DIR=/data FTSERVE_ADAPTER_CACHE_DIR=/data/adapter-cache
EXPOSE 8100
ENTRYPOINT ["ftserve", "inference", "--host", "0.0.0.0", "--port", "8100"]
# The base model is chosen per Deployment: `--base-model NAME` (a catalogue name).
CMD ["--base-model", "tiny-chat"]
