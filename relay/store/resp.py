"""A lean Redis connection for the store's shared round trips.

redis-py spends about 20 µs of CPU per command of a pipeline (its command stack, reply
callbacks, one awaited read per reply); on the delivery path that was a third of the
relay's CPU per message on Redis. This connection writes a whole block in one write and
parses the replies with hiredis (the C parser redis-py itself uses when installed) as they
arrive: about 4.5 µs per command (``bench/relay_bench.py``). Replies are RESP2's, raw:
bytes, integers, lists and None; an error reply is a ``ReplyError`` in its place.

Everything else (loading scripts, the administrative commands, asking the sentinels)
stays with redis-py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis

Arg = str | bytes | int | float
Command = tuple[Arg, ...]


class ReplyError(Exception):
    """An error reply (``-ERR …``, ``-NOSCRIPT …``): the command failed, the connection
    is fine."""


class WireError(ConnectionError):
    """The connection broke, timed out or spoke something other than RESP: it is closed
    and its replies are unknown."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: ssl.SSLContext | None = None


def _packed(commands: Sequence[Command]) -> bytes:
    # hiredis's type hints say one-element tuples; it packs any length.
    return b"".join(hiredis.pack_command(cast(Any, command)) for command in commands)


class _Replies(asyncio.Protocol):
    """Collects parsed replies; wakes the waiter once the count it asked for is in."""

    def __init__(self) -> None:
        self._parser = hiredis.Reader(replyError=ReplyError)
        self.transport: asyncio.Transport | None = None
        self._replies: list[Any] = []
        self._want = 0
        self._waiter: asyncio.Future[list[Any]] | None = None
        self.failure: WireError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        try:
            while (reply := self._parser.gets()) is not False:
                self._replies.append(reply)
        except hiredis.ProtocolError as exc:
            self.fail(WireError(f"not a Redis reply: {exc}"))
            return
        if self._waiter is not None and len(self._replies) >= self._want:
            # Any reply beyond those asked for stays, and fails the next exchange.
            answered, self._replies = self._replies[: self._want], self._replies[self._want :]
            if not self._waiter.done():
                self._waiter.set_result(answered)
            self._waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(WireError(f"connection lost: {exc}" if exc else "connection closed by Redis"))

    def fail(self, failure: WireError) -> None:
        if self.failure is None:
            self.failure = failure
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self.failure)
        self._waiter = None
        if self.transport is not None:
            self.transport.close()

    def expect(self, count: int) -> asyncio.Future[list[Any]]:
        if self._replies:  # replies nobody asked for: what follows would be misread
            self.fail(WireError("Redis sent replies nobody asked for"))
        if self.failure is not None:
            raise self.failure
        assert self._waiter is None, "one exchange at a time"
        self._waiter = asyncio.get_running_loop().create_future()
        self._want = count
        return self._waiter


class RespConnection:
    """One connection; one exchange at a time (the store's round trips are sequential)."""

    def __init__(self, protocol: _Replies, timeout: float) -> None:
        self._protocol = protocol
        self._timeout = timeout

    @classmethod
    async def open(cls, address: Address, *, within: float) -> RespConnection:
        """Connected (TLS, password and database as ``address`` says) ``within`` seconds,
        which also bound each later exchange; WireError otherwise."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(within):
                _, protocol = await loop.create_connection(
                    _Replies,
                    address.host,
                    address.port,
                    ssl=address.tls,
                    server_hostname=address.host if address.tls is not None else None,
                )
        except TimeoutError:
            where = f"{address.host}:{address.port}"
            raise WireError(f"no connection to {where} in {within}s") from None
        except OSError as exc:
            raise WireError(f"{address.host}:{address.port}: {exc.strerror or exc}") from None
        connection = cls(protocol, within)
        try:
            await connection._hello(address)
        except BaseException:
            connection.close()
            raise
        return connection

    async def _hello(self, address: Address) -> None:
        setup: list[Command] = []
        if address.password is not None:
            setup.append(
                ("AUTH", address.password)
                if address.username is None
                else ("AUTH", address.username, address.password)
            )
        if address.db:
            setup.append(("SELECT", address.db))
        for reply in await self.exchange(setup) if setup else []:
            if isinstance(reply, ReplyError):  # Redis's words name no password
                raise WireError(f"Redis refused the connection's setup: {reply}")

    @property
    def closed(self) -> bool:
        return self._protocol.failure is not None or self._protocol.transport is None

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()

    async def exchange(self, commands: Sequence[Command]) -> list[Any]:
        """Each command's reply, in order; the commands go in one write."""
        payload = _packed(commands)  # an argument it cannot send fails here, nothing sent
        waiter = self._protocol.expect(len(commands))
        assert self._protocol.transport is not None
        self._protocol.transport.write(payload)
        try:
            async with asyncio.timeout(self._timeout):
                return await waiter
        except TimeoutError:
            # Its replies may still come, and would answer the next exchange's commands.
            failure = WireError(f"no reply from Redis in {self._timeout}s")
            self._protocol.fail(failure)
            raise failure from None
        except BaseException:  # cancelled (or the connection lost): the same, closed
            self._protocol.fail(WireError("exchange abandoned"))
            raise

    async def transaction(self, commands: Sequence[Command]) -> list[Any]:
        """The commands in one ``MULTI … EXEC`` block: their replies (an error reply in
        the place of a command that failed while running). A block Redis refused as a
        whole (a command it could not queue) raises that refusal."""
        replies = await self.exchange([("MULTI",), *commands, ("EXEC",)])
        result = replies[-1]
        if isinstance(result, list):
            return result
        refused = next((r for r in replies[:-1] if isinstance(r, ReplyError)), result)
        raise refused if isinstance(refused, ReplyError) else ReplyError(f"EXEC: {refused!r}")
