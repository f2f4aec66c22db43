# forgetflow image for the scale-out stack (docker-compose.yml): the Prefect process worker and the
# MLflow tracking server run from it, so clients, worker and server share one MLflow version.
#
#   docker compose --env-file deploy/.env build
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t forgetflow:gpu .
#
# CPU torch by default (small image). For a GPU worker pass a CUDA wheel index as TORCH_INDEX_URL
# (the plain PyPI index also works: its Linux torch wheels are CUDA builds).
FROM python:3.12-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    DVC_NO_ANALYTICS=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    GIT_PYTHON_REFRESH=quiet

# git: DVC and MLflow call it when present; a workspace may be a Git repository.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/forgetflow

# Dependencies first, so a code change does not reinstall torch.
COPY constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt --index-url "${TORCH_INDEX_URL}" torch torchvision

COPY . .
RUN pip install --no-cache-dir -c constraints.txt ".[scale-out]"

# Deployments made from this directory (`forgetflow deploy` inside the container) find their code
# here on every worker built from this image.
CMD ["prefect", "worker", "start", "--pool", "forgetflow", "--type", "process"]
