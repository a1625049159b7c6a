#!/bin/sh
# Runs once, on the first start of the Postgres container: one database and one login role per
# service and for the read side (history), plus the registry's, as the native stack makes them.
# Passwords equal role names (local development only); no role can connect to another's database.
# Each service's database also gets the runtime role the service connects as
# (deploy/postgres/service-roles.sql, mounted at /saga). A data volume made before a database
# was added here lacks it: `docker compose down -v` starts afresh.
set -eu
for db in orders payments inventory shipping history registry saga_test; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE $db LOGIN PASSWORD '$db';
CREATE DATABASE $db OWNER $db;
REVOKE ALL ON DATABASE $db FROM PUBLIC;
SQL
done
for db in orders payments inventory shipping history; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$db" -qAt \
    -v db="$db" -v runtime="${db}_runtime" -f /saga/service-roles.sql >/dev/null
done
