#!/bin/sh
# Run by the postgres image on first initialisation (/docker-entrypoint-initdb.d): the least-privilege roles.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner=evidence_owner -v owner_password="$EVIDENCE_DB_OWNER_PASSWORD" \
    -v app=evidence_api -v app_password="$EVIDENCE_DB_APP_PASSWORD" \
    -f /docker-entrypoint-initdb.d/roles.psql
