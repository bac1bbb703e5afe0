"""The event catalog for analytics consumers, generated from the contracts (AsyncAPI 2.6).

    python -m svc_common.catalog > docs/asyncapi.yaml

Each event type is a channel `<producer>.events/<type>`: a durable topic exchange and the
routing key to bind. A test (svc_common/tests) keeps docs/asyncapi.yaml in step with svc_common/contracts/.
"""
import inspect
import sys

import yaml

from .contracts import EVENTS, EventEnvelope

INTRO = ("Events of the after-sales platform. Bind your own durable queue to the exchange "
         "`<producer>.events` (topic) with the event type as routing key; messages are persistent "
         "JSON envelopes, delivered at least once (deduplicate on event_id). A breaking change of "
         "a payload is a new schema_version, published beside the old one.")


def build() -> dict:
    envelope = EventEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas: dict = {"EventEnvelope": {k: v for k, v in envelope.items() if k != "$defs"}}
    schemas.update(envelope.get("$defs", {}))
    channels, messages = {}, {}
    for event_type, (producer, versions) in sorted(EVENTS.items()):
        for version, contract in sorted(versions.items()):
            payload = contract.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in [*payload.pop("$defs", {}).items(), (contract.__name__, payload)]:
                if schemas.setdefault(name, definition) != definition:  # one name, two different schemas
                    raise RuntimeError(f"two contracts named {name} differ; rename one")
            name = f"{event_type}.v{version}"
            messages[name] = {
                "name": event_type, "title": f"{event_type} v{version}", "contentType": "application/json",
                **({"summary": doc} if (doc := _summary(contract)) else {}),
                "headers": {"type": "object", "properties": {
                    "nameko.correlation_id": {"type": "string"}, "nameko.tenant_id": {"type": "string"}}},
                "payload": {"allOf": [
                    {"$ref": "#/components/schemas/EventEnvelope"},
                    {"type": "object", "properties": {
                        "type": {"const": event_type}, "schema_version": {"const": version},
                        "data": {"$ref": f"#/components/schemas/{contract.__name__}"}}}]},
            }
            channel = channels.setdefault(f"{producer}.events/{event_type}", {
                "description": f"Published by {producer}.",
                "bindings": {"amqp": {"is": "routingKey", "exchange": {
                    "name": f"{producer}.events", "type": "topic", "durable": True, "autoDelete": False}}},
                "subscribe": {"operationId": f"on_{event_type.replace('.', '_')}", "message": {"oneOf": []}},
            })
            channel["subscribe"]["message"]["oneOf"].append({"$ref": f"#/components/messages/{name}"})
    return {
        "asyncapi": "2.6.0",
        "info": {"title": "After-sales platform events", "version": "1.0.0", "description": INTRO},
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def _summary(contract) -> str | None:
    """The first paragraph of the contract's own docstring (not an inherited one)."""
    doc = contract.__dict__.get("__doc__")
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split()) if doc else None


def render() -> str:
    return yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=110)


def main(argv: list[str]) -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
