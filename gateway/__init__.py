"""The HTTP gateway: REST API, auth and tenancy, error mapping, health and metrics."""
