-- Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d),
-- as POSTGRES_USER, which owns both databases. tests/test_scale_out.py runs it on a throwaway cluster.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;

-- Prefect's PostgreSQL migrations need trigram indexes.
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
