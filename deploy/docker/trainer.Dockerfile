# A trainer worker: CUDA PyTorch 2.13 from the base image, then ftserve's trainer extra.
#   docker build -f deploy/docker/trainer.Dockerfile -t ftserve-trainer .
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}
WORKDIR /src
COPY . /src
RUN deploy/docker/install.sh trainer /src && rm -rf /root/.cache
RUN useradd --create-home --uid 10001 ftserve
USER ftserve
ENV FTSERVE_DATA_DIR=/home/ftserve/data FTSERVE_WORKER_HEALTH_PORT=8081
EXPOSE 8081
# SIGTERM: the running job saves its full state and goes back to the queue, then the worker exits.
STOPSIGNAL SIGTERM
CMD ["ftserve", "worker"]
