-- The roles of one service database, run by psql as a superuser connected to that database:
--   psql -v db=orders -v runtime=orders_runtime -f service-roles.sql
-- `db` (the database's owner, made with it) runs the migrations and owns every table;
-- `runtime` is what the service connects as: it reads and writes the owner's tables, and can
-- neither change the schema nor open another database. Passwords equal role names, for local
-- development only (Kubernetes takes them from Secrets). Idempotent: `make up` runs it each time.
-- The same split, on Kubernetes: deploy/k8s/base/postgres/<db>-db.yaml.
\set ON_ERROR_STOP on
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'runtime', :'runtime')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'runtime') \gexec
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"runtime";
-- Only the owner creates anything (Postgres 15 already keeps PUBLIC from creating in public).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"runtime";
-- What exists now, and what the owner's migrations create later.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"runtime";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE :"db" IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE :"db" IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO :"runtime";
