-- One database per service and the gateway: each owns its data (DESIGN.md §2)
-- and no service reads another's tables. Run by the postgres image on its
-- first start (mounted into /docker-entrypoint-initdb.d by docker-compose.yml),
-- as POSTGRES_USER, which so owns them.
CREATE DATABASE tickets;
CREATE DATABASE inventory;
CREATE DATABASE customers;
CREATE DATABASE notify;
CREATE DATABASE reports;
CREATE DATABASE gateway;
