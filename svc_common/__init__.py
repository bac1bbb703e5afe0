"""Cross-cutting code shared by every service and the gateway.

settings, request context, typed errors, database + tenancy, unit of work,
event envelope and contracts, transactional outbox relay, reliable consumers,
metrics, logging, the service runner and migrations.
"""
