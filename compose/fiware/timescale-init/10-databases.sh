#!/bin/sh
# First start of the TimescaleDB server only (the image runs
# /docker-entrypoint-initdb.d/* when the data volume is empty, as the
# superuser): the QuantumLeap database with the PostGIS and TimescaleDB
# extensions QuantumLeap requires, and the metropole database that holds the
# agents' device registry (schema `agents`). Passwords come from the
# container's environment (compose/fiware/.env), never from this file; psql
# variables quote them, so any character is safe.
set -eu
: "${QUANTUMLEAP_DB_PASSWORD:?QUANTUMLEAP_DB_PASSWORD is not set}"
: "${METROPOLE_DB_PASSWORD:?METROPOLE_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
     -v ql_password="$QUANTUMLEAP_DB_PASSWORD" -v mp_password="$METROPOLE_DB_PASSWORD" <<'SQL'
CREATE ROLE quantumleap LOGIN PASSWORD :'ql_password';
CREATE DATABASE quantumleap OWNER quantumleap ENCODING 'UTF8';
CREATE ROLE metropole LOGIN PASSWORD :'mp_password';
CREATE DATABASE metropole OWNER metropole ENCODING 'UTF8';
\connect quantumleap
CREATE EXTENSION IF NOT EXISTS postgis CASCADE;
CREATE EXTENSION IF NOT EXISTS timescaledb CASCADE;
\connect metropole
CREATE EXTENSION IF NOT EXISTS postgis CASCADE;
CREATE SCHEMA IF NOT EXISTS agents AUTHORIZATION metropole;
SQL
echo "timescale-init: databases quantumleap and metropole created"
