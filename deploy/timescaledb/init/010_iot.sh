#!/bin/bash
# Runs once, when the timescaledb container starts with an empty data volume (after the image's own
# 000_install_timescaledb.sh, which installs the extension into template1, and 001_timescaledb_tune.sh).
# Creates the application database and Grafana's login. Tables, the iot_* roles and Grafana's grants
# come later: `iot migrate` makes them, then the grafana-grant service (grafana-grant.sql) grants them.
set -eo pipefail

if [[ -z "${GRAFANA_DB_PASSWORD:-}" ]]; then
  echo "010_iot.sh: GRAFANA_DB_PASSWORD is not set" >&2
  exit 1
fi

# \getenv keeps the password off the command line; :'name' quotes it as an SQL literal.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
create database iot;
\getenv grafana_password GRAFANA_DB_PASSWORD
create role grafana login password :'grafana_password';
comment on role grafana is 'Grafana data source login: member of iot_analyst, sees the tenants in iot_private.sql_role_tenants.';
SQL
