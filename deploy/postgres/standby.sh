#!/bin/sh
# The standby: on first start, a base backup of the primary that starts streaming from it
# (`pg_basebackup -R` writes primary_conninfo and standby.signal); then the server. Its cluster_name
# is the name the primary's synchronous_standby_names waits for. After `pg_ctl promote` it is the
# primary (the processes find it through HITL_DATABASE_URL's host list); to put the old primary back,
# make it a standby of this one (pg_basebackup or pg_rewind), never start it as a second primary.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h "$PRIMARY_HOST" -q; do sleep 1; done
  PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup -h "$PRIMARY_HOST" -U replicator -D "$PGDATA" -R -X stream \
    --checkpoint=fast
  echo "cluster_name = 'standby'" >> "$PGDATA/postgresql.auto.conf"
  chmod 700 "$PGDATA"
fi
exec postgres
