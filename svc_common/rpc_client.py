"""A small asyncio client that speaks nameko's RPC wire format (used by the gateway).

nameko's standalone proxies are single-threaded and open reply queues per proxy; this
client keeps ONE robust connection, one publishing channel and one reply queue for the
whole process, and matches replies to callers by correlation id, so any number of
concurrent requests share it safely.

Wire format (nameko 2.x): publish JSON {"args": [], "kwargs": {...}} to the topic exchange
`nameko-rpc` with routing key `<service>.<method>`, `reply_to` = a routing key bound to our
reply queue on that exchange, context data as `nameko.<key>` headers. The reply is
{"result": ..., "error": {exc_type, exc_path, exc_args, value} | null}.
"""
import asyncio
import json
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

RPC_EXCHANGE = "nameko-rpc"


class RpcTimeout(Exception):
    pass


class RemoteError(Exception):
    """An error raised by the remote method; `exc_type` names its class."""

    def __init__(self, exc_type: str, value: str, exc_args: list | None = None):
        super().__init__(f"{exc_type}: {value}")
        self.exc_type = exc_type
        self.value = value
        self.exc_args = exc_args or []

    @property
    def errors(self) -> list[dict]:
        """Field errors of a ValidationFailed (second constructor argument)."""
        if len(self.exc_args) > 1 and isinstance(self.exc_args[1], list):
            return self.exc_args[1]
        return []


class RpcClient:
    def __init__(self, amqp_uri: str, timeout: float = 10.0):
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self._pending: dict[str, asyncio.Future] = {}
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._reply_key = f"gateway-{uuid.uuid4().hex}"

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(self.amqp_uri)
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=0)
        self._exchange = await channel.declare_exchange(RPC_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        # Exclusive + auto-delete: it disappears with this process, no leaked reply queues.
        queue = await channel.declare_queue(f"rpc.reply-{self._reply_key}", exclusive=True, auto_delete=True)
        await queue.bind(self._exchange, routing_key=self._reply_key)
        await queue.consume(self._on_reply, no_ack=True)
        self._channel = channel

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("RPC client closed"))

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        fut = self._pending.pop(message.correlation_id or "", None)
        if fut is not None and not fut.done():
            fut.set_result(json.loads(message.body))

    async def call(self, service: str, method: str, context: dict[str, str] | None = None,
                   timeout: float | None = None, **kwargs: Any) -> Any:
        correlation_id = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = fut
        headers = {f"nameko.{k}": v for k, v in (context or {}).items() if v is not None}
        # Identifies this call; a redelivery of the message (its worker died before acking)
        # carries the same id, so a service can recognise a create it has already committed.
        headers.setdefault("nameko.request_id", correlation_id)
        body = json.dumps({"args": [], "kwargs": kwargs}, default=str).encode()
        try:
            await self._exchange.publish(
                aio_pika.Message(body, content_type="application/json", correlation_id=correlation_id,
                                 reply_to=self._reply_key, headers=headers,
                                 delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT),
                routing_key=f"{service}.{method}",
                mandatory=False,
            )
            reply = await asyncio.wait_for(fut, timeout or self.timeout)
        except asyncio.TimeoutError:
            raise RpcTimeout(f"{service}.{method} did not answer within {timeout or self.timeout}s") from None
        finally:
            self._pending.pop(correlation_id, None)
        error = reply.get("error")
        if error:
            raise RemoteError(error.get("exc_type", "RemoteError"), error.get("value", ""), error.get("exc_args"))
        return reply.get("result")
