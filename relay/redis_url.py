"""Redis store URLs: a single server, or a primary found through Redis Sentinel.

``redis://[:password@]host:port/db`` (``rediss://`` for TLS) names one server.
``redis+sentinel://[:password@]host1:26379,host2:26379/<service>/<db>`` names the
sentinels (default port 26379) that watch the primary ``<service>`` (the name in
``sentinel monitor``); the password is the primary's (the sentinels are asked without
one unless ``?sentinel_password=`` is given). The relay then asks the sentinels for the
primary and, after a failover, for the new one (redis-py's Sentinel client).

A problem is a reason that never quotes the URL: it may carry a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel://"
REDIS_SCHEMES = ("redis://", "rediss://", SENTINEL_SCHEME)
SENTINEL_PORT = 26379
SENTINEL_FORM = "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/SERVICE[/DB]"


def is_redis(url: str) -> bool:
    return url.startswith(REDIS_SCHEMES)


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None

    def redacted(self) -> str:
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"{SENTINEL_SCHEME}{hosts}/{self.service}/{self.db}"


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # an IPv6 address: [::1]:26379
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"a sentinel address names no host ({SENTINEL_FORM})")
    if not port_text:
        return host, SENTINEL_PORT
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ValueError("a sentinel's port must be a number from 1 to 65535")
    return host, int(port_text)


def parse_sentinel(url: str) -> SentinelTarget:
    """The parts of a ``redis+sentinel://`` URL; ValueError (not quoting it) when bad."""
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"must be {SENTINEL_FORM}")
    rest = url[len(SENTINEL_SCHEME) :]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    addresses = tuple(_host_port(h) for h in hosts.split(",") if h)
    if not addresses:
        raise ValueError(f"names no sentinel ({SENTINEL_FORM})")
    service, _, db_text = path.strip("/").partition("/")
    if not service:
        raise ValueError(
            f"names no service, the primary's name in `sentinel monitor` ({SENTINEL_FORM})"
        )
    if db_text and not (db_text.isascii() and db_text.isdigit()):
        raise ValueError(f"the database must be a number ({SENTINEL_FORM})")
    options = parse_qs(query)
    unknown = sorted(set(options) - {"sentinel_password"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} (only sentinel_password)")
    sentinel_password = options.get("sentinel_password", [None])[-1]
    return SentinelTarget(
        addresses, service, int(db_text or 0), username, password, sentinel_password
    )


def redacted(url: str) -> str:
    """The URL without its credentials (and options), for logs and errors."""
    if url.startswith(SENTINEL_SCHEME):
        try:
            return parse_sentinel(url).redacted()
        except ValueError:
            return f"{SENTINEL_SCHEME}?"
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{url.partition('://')[0]}://?"
    return f"{parts.scheme}://{host}{port}{parts.path}"
