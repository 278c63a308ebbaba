"""Relay configuration: the environment variables in the README's configuration table.

Every secret may instead come from a file named by ``<NAME>_FILE`` (how Kubernetes
mounts Secrets). A missing or invalid setting stops start-up with one line naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .meta.events import MAX_AHEAD_MS
from .records import Retention
from .redis_url import SENTINEL_SCHEME, is_redis, parse_sentinel

ENV_PREFIX = "IGBRIDGE_"

# Settings that may come from a file named by <NAME>_FILE: the secrets, plus values that
# live in the same Kubernetes Secrets (the client id, a store URL with a password).
SECRET_FIELDS = (
    "genesys_client_id",
    "store_url",
    "meta_app_secret",
    "meta_verify_token",
    "meta_access_token",
    "genesys_client_secret",
    "genesys_webhook_secret",
    "crm_token",
)

# Hosts Meta serves message media and profile pictures from (its CDN and lookaside).
DEFAULT_MEDIA_HOSTS = (
    "lookaside.fbsbx.com",
    "*.fbsbx.com",
    "*.cdninstagram.com",
    "*.fbcdn.net",
    "www.instagram.com",
)


# Profile fields that may become Genesys attributes (IGBRIDGE_PROFILE_ATTRIBUTES); all by
# default. ProfileUrl and Source are always sent: routing and the agent's view need them.
PROFILE_ATTRIBUTES = (
    "InstagramUsername",
    "FollowerCount",
    "FollowerTier",
    "FollowsBusiness",
    "VerifiedUser",
)
DEFAULT_PROFILE_ATTRIBUTES = PROFILE_ATTRIBUTES


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it and never echoes a secret."""


class HandedOverSettings(BaseSettings):
    """Settings read only from the mapping their loader hands over (the environment, with
    ``*_FILE`` secrets resolved), so a test's explicit environment is never mixed with the
    process's own."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class Settings(HandedOverSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    meta_graph_url: str = "https://graph.facebook.com"
    meta_api_version: str = "v21.0"
    meta_app_secret: Annotated[list[SecretStr], NoDecode]
    meta_verify_token: SecretStr
    meta_access_token: SecretStr
    instagram_account_id: str = Field(min_length=1)
    # Further entry.id values Meta may label this account's events with (Instagram Login's
    # app-scoped user id may differ from /me's id); entries for any other id are skipped.
    instagram_entry_ids: Annotated[tuple[str, ...], NoDecode] = ()
    # Threads another app controls (entry.standby[]): kept out of Genesys, or delivered
    # marked so agents know their replies would be refused.
    standby: Literal["skip", "deliver"] = "skip"

    genesys_api_url: str
    genesys_login_url: str | None = None
    genesys_client_id: str = Field(min_length=1)
    genesys_client_secret: SecretStr
    genesys_integration_id: str = Field(min_length=1)
    genesys_webhook_secret: SecretStr

    store_url: str = "sqlite:///./igbridge.db"
    # Keeps channels apart when several share one Redis; by default the channel's
    # namespace/name when the operator runs the relay, else "igbridge".
    store_prefix: str | None = Field(default=None, min_length=1, max_length=200)
    # A worker holds a job under a lease it renews every third of this; a replica that
    # dies stops renewing and another takes the job over once the lease runs out.
    lease_seconds: float = Field(default=30.0, ge=1.0, le=3600)

    window_escalate_after: int = Field(default=72000, gt=0, le=86400)
    # One point of priority ranks like one minute of waiting; 600 moves a conversation
    # ahead of anything that has waited less than ten hours longer.
    window_priority: int = Field(default=600, ge=-25_000_000, le=25_000_000)
    human_agent_tag: bool = True
    # How to answer a conversation that began with a comment: one private DM reply to the
    # comment (Meta allows one per comment, within 7 days) or public replies under it.
    comment_replies: Literal["private", "public"] = "private"

    # Operational knobs with safe defaults.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # The HTTP server's bounds (relay/web/server.py): a client that never finishes its
    # request, or holds connections open, must not take the relay offline.
    header_timeout: float = Field(default=10.0, gt=0, le=300)
    body_timeout: float = Field(default=30.0, gt=0, le=600)
    keep_alive_timeout: int = Field(default=5, gt=0, le=300)
    max_connections: int = Field(default=1000, gt=0, le=1_000_000)
    # /healthz, /readyz and /metrics: on this port (same address as the webhooks), not the
    # webhook one; ``serve --admin-port`` overrides it.
    admin_port: int = Field(default=9090, ge=1, le=65535)
    media_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = DEFAULT_MEDIA_HOSTS
    media_ca_file: Path | None = None
    media_timeout: float = Field(default=2.0, gt=0, le=30)
    genesys_timeout: float = Field(default=10.0, gt=0, le=120)
    worker_concurrency: int = Field(default=16, gt=0, le=1024)
    # Retries: delays grow exponentially up to this cap; Instagram sends give up (and tell
    # the agent) after this many attempts; Genesys deliveries keep trying for 24 h.
    backoff_cap: float = Field(default=60.0, gt=0, le=3600)
    # Instagram events and agents' messages older than this (by the platform's own time)
    # are refused as replays: past the dedupe memory (7 days) a replay would be sent again.
    # 0 turns the check off (recorded test payloads carry fixed, old times).
    replay_horizon_seconds: int = Field(default=7 * 86400, ge=0, le=7 * 86400)
    send_max_attempts: int = Field(default=8, gt=0, le=100)
    log_level: str = "INFO"
    # Set by the operator's Deployment: where the relay reports into status.relay.
    channel_name: str | None = None
    channel_namespace: str | None = None
    pod_name: str | None = None
    status_interval: float = Field(default=15.0, gt=0, le=3600)
    # Refused credentials are asked about again after 1, 2, 4, ... seconds, at most this.
    credentials_recheck_cap: float = Field(default=300.0, ge=1.0, le=3600)
    # Spam rules as JSON (the InstagramChannel's spec.guard); see relay/pipeline/guard.py.
    guard: str = ""

    # Field name → the file it was read from; set by load_settings.
    _secret_files: dict[str, Path] = PrivateAttr(default_factory=dict)

    @field_validator("guard")
    @classmethod
    def _guard(cls, value: str) -> str:
        from .pipeline.guard import parse_rules

        try:
            parse_rules(value)
        except ValueError as exc:
            first = str(exc).splitlines()
            raise ValueError("invalid rules: " + " ".join(first[1:3]).strip()) from None
        return value

    # Optional CRM lookup (GET url?igsid=&username= → flat JSON merged into attributes).
    crm_url: str | None = None
    crm_timeout: float = Field(default=1.0, gt=0, le=30)
    crm_token: SecretStr | None = None

    # SLA sweeper: how often to look, and where to send an alert (optional).
    sla_sweep_seconds: float = Field(default=60.0, gt=0, le=3600)
    alert_webhook_url: str | None = None

    # The path of the public URL, when a proxy forwards it unchanged (e.g. /shop).
    base_path: str = ""
    # The relay's public base URL (scheme, host, and base path if any), for links it hands
    # out: the status URL of Meta's data-deletion callback. Unset: the request's own.
    public_url: str | None = None

    # Retention (the README's privacy table): how long each kind of stored data is kept.
    # Dedupe keys must outlive Meta's 36 h of retries and the replay horizon.
    retention_dedupe_seconds: float = Field(default=7 * 86400.0, ge=36 * 3600, le=90 * 86400)
    retention_dead_letter_seconds: float = Field(default=30 * 86400.0, ge=3600, le=365 * 86400)
    retention_dead_letter_payload_seconds: float = Field(default=7 * 86400.0, ge=0, le=365 * 86400)
    # A customer's latest message time: Meta's longest reply (HUMAN_AGENT) is 7 days after.
    retention_window_seconds: float = Field(default=7 * 86400.0, ge=86400, le=90 * 86400)
    retention_records_seconds: float = Field(default=7 * 86400.0, ge=3600, le=90 * 86400)

    # Which profile fields become Genesys attributes (names as pipeline/inbound.py sets);
    # ProfileUrl and Source are always sent, routing depends on them.
    profile_attributes: Annotated[tuple[str, ...], NoDecode] = DEFAULT_PROFILE_ATTRIBUTES

    @field_validator("profile_attributes", mode="before")
    @classmethod
    def _split_attributes(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("profile_attributes")
    @classmethod
    def _known_attributes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in PROFILE_ATTRIBUTES]
        if unknown:
            known = ", ".join(PROFILE_ATTRIBUTES)
            raise ValueError(f"unknown {', '.join(unknown)[:200]} (known: {known})")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _retention_order(self) -> Settings:
        if self.retention_dead_letter_payload_seconds > self.retention_dead_letter_seconds:
            raise ValueError(
                "retention_dead_letter_payload_seconds: must not exceed"
                " retention_dead_letter_seconds"
            )
        if self.retention_dedupe_seconds < self.replay_horizon_seconds:
            raise ValueError(
                "retention_dedupe_seconds: must cover replay_horizon_seconds (a replay past"
                " the dedupe memory would be delivered again)"
            )
        return self

    @property
    def replay_horizon_ms(self) -> int:
        """How old a platform time may be before its event is a replay (0: no check): the
        configured horizon, shortened so that a time accepted up to ``MAX_AHEAD_MS`` ahead
        is stale before its dedupe key is forgotten."""
        remembered = int(self.retention_dedupe_seconds * 1000) - MAX_AHEAD_MS
        return min(self.replay_horizon_seconds * 1000, remembered)

    @property
    def retention(self) -> Retention:
        return Retention(
            dedupe_seconds=self.retention_dedupe_seconds,
            dead_letter_seconds=self.retention_dead_letter_seconds,
            dead_letter_payload_seconds=self.retention_dead_letter_payload_seconds,
            window_seconds=self.retention_window_seconds,
            records_seconds=self.retention_records_seconds,
        )

    @field_validator("base_path")
    @classmethod
    def _base_path(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and (not value.startswith("/") or " " in value):
            raise ValueError("must be empty or a path starting with /")
        return value

    @field_validator("meta_app_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not parts:
                raise ValueError("needs at least one secret")
            return parts
        return value

    @field_validator("instagram_entry_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("media_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip().lower() for p in value.split(",") if p.strip())
        return value

    @field_validator("media_allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from .meta.media import allow_entry

        for entry in value:
            if allow_entry(entry) is None:
                raise ValueError(f"{entry[:100]!r} is not host, *.suffix or host:port")
        return value

    @field_validator("meta_graph_url", "genesys_api_url", "genesys_login_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or is_redis(value)):
            raise ValueError(
                "must be sqlite:///PATH, redis://HOST:PORT/DB or"
                " redis+sentinel://HOST:PORT[,HOST:PORT…]/SERVICE/DB"
            )
        if value.startswith("sqlite:///"):
            return value
        if value.startswith(SENTINEL_SCHEME):
            parse_sentinel(value)  # its ValueError names the part, never the URL
            return value
        # Checked here, not when the store connects: a bad port would otherwise end
        # start-up with the Redis client's traceback. No part of the URL is echoed: it may
        # carry a password.
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError("the port must be a number from 1 to 65535") from None
        if not parts.hostname:
            raise ValueError("names no host (redis://HOST:PORT/DB)")
        if port == 0:
            raise ValueError("the port must be a number from 1 to 65535")
        db = parts.path.lstrip("/")
        if db and not (db.isascii() and db.isdigit()):
            raise ValueError("the database must be a number (redis://HOST:PORT/DB)")
        return value

    @field_validator("genesys_webhook_secret")
    @classmethod
    def _webhook_secret_length(cls, value: SecretStr) -> SecretStr:
        # Genesys requires the signing secret to be more than 15 characters.
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _derive_login_url(self) -> Settings:
        if self.genesys_login_url is None:
            object.__setattr__(self, "genesys_login_url", derive_login_url(self.genesys_api_url))
        return self

    def reread_secret(self, field: str) -> str | None:
        """The current content of the file ``field`` was read from (``<NAME>_FILE``), so a
        rotated Kubernetes Secret (its mounted files are swapped in place) works without a
        restart; None when the setting came from the environment or the file cannot be read
        now."""
        path = self._secret_files.get(field)
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    @property
    def genesys_login(self) -> str:
        assert self.genesys_login_url is not None
        return self.genesys_login_url

    @property
    def store_key_prefix(self) -> str:
        if self.store_prefix:
            return self.store_prefix
        if self.channel_namespace and self.channel_name:
            return f"igbridge:{self.channel_namespace}/{self.channel_name}"
        return "igbridge"

    @property
    def app_secrets(self) -> list[bytes]:
        return [s.get_secret_value().encode() for s in self.meta_app_secret]

    @property
    def graph_base(self) -> str:
        return f"{self.meta_graph_url}/{self.meta_api_version}"


def derive_login_url(api_url: str) -> str:
    """``https://api.mypurecloud.ie`` → ``https://login.mypurecloud.ie``; other hosts unchanged."""
    parts = urlsplit(api_url)
    host = parts.netloc
    if host.startswith("api."):
        host = "login." + host[len("api.") :]
    return urlunsplit((parts.scheme, host, "", "", "")).rstrip("/")


def _read_secret_files(environ: dict[str, str]) -> dict[str, str]:
    """Resolve ``IGBRIDGE_X_FILE`` into ``IGBRIDGE_X`` (the file wins only when X is unset)."""
    resolved: dict[str, str] = {}
    for name in SECRET_FIELDS:
        env = ENV_PREFIX + name.upper()
        path = environ.get(env + "_FILE")
        if path and env not in environ:
            try:
                resolved[env] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{env}_FILE: cannot read {path}: {exc.strerror}") from None
    return resolved


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from the environment, or raise ConfigError naming the first bad setting."""
    env = dict(os.environ if environ is None else environ)
    from_files = _read_secret_files(env)
    env.update(from_files)
    relevant = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    try:
        settings = Settings.model_validate(
            {k[len(ENV_PREFIX) :].lower(): v for k, v in relevant.items()}
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        name = ENV_PREFIX + field.upper()
        reason = "is required" if err["type"] == "missing" else err["msg"]
        raise ConfigError(f"{name}: {reason}") from None
    settings._secret_files = {
        field: Path(env[f"{ENV_PREFIX}{field.upper()}_FILE"])
        for field in SECRET_FIELDS
        if f"{ENV_PREFIX}{field.upper()}" in from_files
    }
    return settings
