# One image, several roles (compose.yaml / docs/operations.md):
#   api      gunicorn "service.api:create_app()"
#   worker   celery -A workers.celery_app worker
#   beat     celery -A workers.celery_app beat
#   migrate  evidence db upgrade   (one-shot, before a rollout; the web process never migrates)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# CJK and Latin fonts for the certificate PDFs (service/court/fonts.py looks for these Debian packages).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-noto-cjk fonts-wqy-zenhei fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so a signing key file on the host can be chowned to it (chown 10001:10001, chmod 600).
RUN groupadd --system --gid 10001 evidence \
    && useradd --system --uid 10001 --gid evidence --home-dir /var/lib/evidence --create-home \
       --shell /usr/sbin/nologin evidence

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY workers ./workers
COPY migrations ./migrations
COPY scripts/build-download ./scripts/build-download
# Editable: service.storage.db finds migrations/ beside the package (/app/migrations), as in the repository.
# build/download: the offline verifier's wheels that GET /download/ serves (certificates point courts there).
# The working fonts: the CJK faces cut once to the characters certificates use (docs/certificate.md), so no
# process pays the full font's parsing and subsetting per certificate.
ENV EVIDENCE_FONT_CACHE_DIR=/app/font-cache
RUN pip install -e ".[server]" && python -c "import service.storage.db, workers.celery_app" \
    && PYTHON=python scripts/build-download /app/build/download \
    && python -m service.court.fonts

USER evidence:evidence
ENV EVIDENCE_DATA_DIR=/var/lib/evidence
EXPOSE 8000

# The default role is the API; compose.yaml gives each service its own command.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--worker-class", "service.api.gunicorn_worker.ProblemThreadWorker", "--workers", "4", "--threads", "4", \
     "--access-logfile", "-", "service.api:create_app()"]
