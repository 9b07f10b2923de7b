# fitpipe as a container: the CLI plus Debian's cron, which runs the nightly ingest.
# Used by docker-compose.timescale.yml (service fitpipe); docker/entrypoint.sh says what it does.
#
#   docker compose -f docker-compose.timescale.yml build fitpipe
#   docker compose -f docker-compose.timescale.yml run --rm fitpipe status     any fitpipe command
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# cron runs the scheduled ingest. Containers may not set the login uid, so pam_loginuid must not
# be required for cron's sessions, or cron would refuse to start any job.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cron \
    && rm -rf /var/lib/apt/lists/* \
    && sed -i -E 's/^(session\s+)required(\s+pam_loginuid\.so)/\1optional\2/' /etc/pam.d/cron

WORKDIR /app

# Which extras the image carries. A study's image needs google-health (and parquet for exports);
# the compose file's demo adds synthetic (wearipedia, with its notebook stack) for made-up participants.
ARG FITPIPE_EXTRAS="google-health,parquet"

# Dependencies first, in a layer of their own that only pyproject.toml and constraints.txt (the
# versions the tests ran with) invalidate: they come with a stand-in package (and readme), removed
# again. Then the real package, without dependencies.
COPY pyproject.toml constraints.txt ./
RUN mkdir -p src/fitpipe && echo '__version__ = "0"' > src/fitpipe/__init__.py && touch README.md \
    && pip install -c constraints.txt ".[${FITPIPE_EXTRAS}]" && pip uninstall -y fitpipe && rm -rf src build README.md
# pyproject.toml names README.md as the package's readme, so the build needs it.
COPY README.md ./
COPY src/ ./src/
# The migrations are files inside the package, so the install carries them.
RUN pip install --no-deps . && rm -rf build && fitpipe --version

COPY docker/entrypoint.sh docker/ingest-job.sh ./docker/
# fitpipe itself runs as the unprivileged user fitpipe (docker/entrypoint.sh drops to it with
# setpriv; cron's job too). /metrics belongs to it, so a new fitpipe-metrics volume does too.
RUN chmod 0755 docker/entrypoint.sh docker/ingest-job.sh \
    && useradd --system --user-group --uid 10001 --create-home --home-dir /home/fitpipe \
               --shell /usr/sbin/nologin fitpipe \
    && mkdir -p /metrics && chown fitpipe:fitpipe /metrics

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["serve"]
