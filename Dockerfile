# One image for every incident-guard process (see Procfile and docker-compose.yml).
# Two stages: the wheel is built where a C compiler is, so it holds the backup walk's compiled page
# stat (guard/backup/walk/_statpage.c), the dump's chunker (guard/backup/repo/_chunker.c) and the files
# check's lister and matcher (guard/fs/_pathsets.c), all through setup.py, as `make` builds them; the image installs that
# wheel and carries no compiler and no source tree (run from /app, `python -m watchers...` imports the
# installed package, not a copy of the sources). tests/unit/test_dockerfile.py builds the wheel from
# exactly what the COPY lines below copy (minus .dockerignore) and checks the extension is in it.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY guard ./guard
COPY workers ./workers
COPY watchers ./watchers
COPY examples ./examples
# setup.py marks the extensions optional (an install without gcc still succeeds); the image must have them.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -c "import glob, sys, zipfile; names = zipfile.ZipFile(glob.glob('/wheels/*.whl')[0]).namelist(); missing = [m for m in ('guard/backup/walk/_statpage', 'guard/backup/repo/_chunker', 'guard/fs/_pathsets') if not any(n.startswith(m + '.') and n.endswith('.so') for n in names)]; sys.exit('the wheel has no compiled ' + ' or '.join(missing) if missing else 0)"

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client rclone && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && python -c "from guard.backup.walk import statpage; from guard.backup.repo import chunker; from guard.fs import pathsets; assert statpage.implementation() == chunker.implementation() == pathsets.implementation() == 'compiled'"
WORKDIR /app
USER nobody
