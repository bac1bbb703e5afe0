# One image for the gateway, the five services and their migrations; the
# container command picks the role (see docker-compose.yml and deploy/k8s/).

# Patch release and Debian suite pinned so rebuilds are reproducible and run
# the same interpreter the lock was compiled for (requirements.lock, 3.11).
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Fixed numeric ids: Kubernetes' runAsNonRoot can only verify a numeric USER,
# and deploy/k8s sets the same uid/gid.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin app

# A CJK font for the QR labels' printed company names (PNG, Pillow); the PDF
# labels and service reports use reportlab's built-in CID fonts instead.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends fonts-wqy-microhei \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies before the code so a code change reuses this layer. The lock
# pins the whole tree with hashes; --no-deps keeps anything unpinned out.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

# The code stays owned by root: the runtime user can read it, not change it.
COPY . .
# ...except data/, the one writable folder: relative paths of the settings
# (e.g. the dev SMS log) land there; data/files holds work-order attachments
# (a fresh named volume mounted there takes this ownership).
RUN mkdir -p /app/data/files && chown 10001:10001 /app/data /app/data/files

# Each service's package lives under services/<name>/ (DESIGN.md §3).
ENV PYTHONPATH=/app:/app/services/tickets:/app/services/inventory:/app/services/customers:/app/services/notify:/app/services/reports

USER 10001:10001

# 8000: gateway HTTP; 9100: a service's /metrics, /healthz, /readyz.
EXPOSE 8000 9100

# Health command for plain `docker run`: deploy/healthcheck.py probes /healthz
# on the role's own port (services 9100, gateway 8000; migrations: healthy).
# Compose and Kubernetes still declare their own probes per role.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
  CMD ["python", "/app/deploy/healthcheck.py"]

CMD ["python", "-m", "gateway"]
