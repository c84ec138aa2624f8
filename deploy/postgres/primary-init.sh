#!/bin/sh
# Run once by the postgres image when it creates the primary's data directory: the user the standby
# streams WAL as, the pg_hba line that lets it in, and synchronous replication — a commit returns
# only once the standby has it, so promoting the standby loses no transaction anyone was told about.
# (In force from the next server start, the real one; while the standby is down, commits wait.)
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '${REPLICATION_PASSWORD}';
ALTER SYSTEM SET synchronous_standby_names = 'standby';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
