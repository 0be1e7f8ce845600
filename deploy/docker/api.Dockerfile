# The API: Litestar on uvicorn, with the validation and reconciler loops. No torch, no GPU.
#   docker build -f deploy/docker/api.Dockerfile -t ftserve-api .
FROM python:3.11-slim
WORKDIR /src
COPY . /src
RUN deploy/docker/install.sh api /src && rm -rf /root/.cache
RUN useradd --create-home --uid 10001 ftserve
USER ftserve
ENV FTSERVE_HOST=0.0.0.0 FTSERVE_PORT=8000 FTSERVE_DATA_DIR=/home/ftserve/data
EXPOSE 8000
# Migrations run as their own step (`ftserve db upgrade`, a Job in Kubernetes); `ftserve up
# --no-inference --workers 0` would also run them, but only one replica should.
CMD ["python", "-m", "uvicorn", "--factory", "service.api.app:create_app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]
