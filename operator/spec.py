"""The InstagramChannel spec as typed values, with the CRD's defaults applied.

The CRD (charts/igbridge/crds/) validates and defaults on a real apiserver; parsing here
applies the same defaults so the operator behaves the same where none does (tests).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from igbridge.relay.config import derive_login_url
from igbridge.relay.pipeline.guard import GuardRules
from igbridge.relay.records import Retention

from .problems import invalid_spec


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class MetaCredentialsRef(_Spec):
    name: str
    app_secret_key: str = Field(default="app-secret", alias="appSecretKey")
    access_token_key: str = Field(default="access-token", alias="accessTokenKey")


class GenesysCredentialsRef(_Spec):
    name: str
    client_id_key: str = Field(default="client-id", alias="clientIdKey")
    client_secret_key: str = Field(default="client-secret", alias="clientSecretKey")


Login = Literal["facebook", "instagram"]
# Each login's Graph host; a graphUrl elsewhere (a proxy, a simulator) is taken as given.
GRAPH_URLS: dict[str, str] = {
    "facebook": "https://graph.facebook.com",
    "instagram": "https://graph.instagram.com",
}
# Facebook Login subscribes the Page linked to the account. Meta's Instagram pages ask for
# "any" Page field and name none as required for Instagram messaging (the Instagram fields
# themselves are chosen in the App Dashboard); ``feed`` is the one Meta's example uses, and
# the list is configurable should Meta ever want others.
DEFAULT_PAGE_FIELDS = ("feed",)


class InstagramSpec(_Spec):
    account_id: str = Field(alias="accountId")
    login: Login = "facebook"
    page_id: str | None = Field(default=None, alias="pageId")
    page_subscribed_fields: tuple[str, ...] = Field(
        default=DEFAULT_PAGE_FIELDS, alias="pageSubscribedFields", min_length=1
    )
    entry_ids: tuple[str, ...] = Field(default=(), alias="entryIds")
    standby: Literal["skip", "deliver"] = "skip"
    graph_url_: str | None = Field(default=None, alias="graphUrl")
    api_version: str = Field(default="v21.0", alias="apiVersion")
    credentials: MetaCredentialsRef = Field(alias="credentialsSecretRef")
    subscribe_webhooks: bool = Field(default=True, alias="subscribeWebhooks")

    @model_validator(mode="after")
    def _login_is_consistent(self) -> InstagramSpec:
        # The CRD's CEL rules say the same; these hold where an apiserver skips CEL.
        if self.login == "facebook" and self.subscribe_webhooks and not self.page_id:
            raise ValueError(
                "Facebook Login subscribes the Page linked to the account: set pageId "
                "(or login: instagram, or subscribeWebhooks: false)"
            )
        given = (self.graph_url_ or "").rstrip("/")
        for login, url in GRAPH_URLS.items():
            if given == url and login != self.login:
                raise ValueError(f"graphUrl {given} is {login} Login's host, not {self.login}'s")
        return self

    @property
    def graph_url(self) -> str:
        """The Graph API base: as given, else the login's own host."""
        return (self.graph_url_ or GRAPH_URLS[self.login]).rstrip("/")


class GenesysSpec(_Spec):
    region: str | None = None
    api_url_: str | None = Field(default=None, alias="apiUrl")
    login_url_: str | None = Field(default=None, alias="loginUrl")
    credentials: GenesysCredentialsRef = Field(alias="credentialsSecretRef")
    inbound_flow_id: str | None = Field(default=None, alias="inboundFlowId")
    integration_name: str | None = Field(default=None, alias="integrationName")
    supported_content_id: str | None = Field(default=None, alias="supportedContentId")
    messaging_setting_id: str | None = Field(default=None, alias="messagingSettingId")

    @property
    def api_url(self) -> str:
        if self.api_url_:
            return self.api_url_.rstrip("/")
        return f"https://api.{self.region or 'mypurecloud.com'}"

    @property
    def login_url(self) -> str:
        return (self.login_url_ or derive_login_url(self.api_url)).rstrip("/")


class RedisRef(_Spec):
    name: str
    url_key: str = Field(default="url", alias="urlKey")


class StoreSpec(_Spec):
    redis: RedisRef | None = Field(default=None, alias="redisSecretRef")


class RelaySpec(_Spec):
    image: str | None = None
    replicas: int = 1
    resources: dict[str, Any] = Field(default_factory=dict)
    log_level: str = Field(default="INFO", alias="logLevel")
    store: StoreSpec = Field(default_factory=StoreSpec)
    comment_replies: Literal["private", "public"] = Field(default="private", alias="commentReplies")

    @model_validator(mode="after")
    def _replicas_need_redis(self) -> RelaySpec:
        # The CRD's CEL rule says the same; this holds where an apiserver skips CEL.
        if self.replicas > 1 and self.store.redis is None:
            raise ValueError("replicas > 1 needs store.redisSecretRef: SQLite serves one replica")
        return self


class WindowSpec(_Spec):
    escalate_after: int = Field(default=72000, alias="escalateAfterSeconds")
    priority: int = 600
    human_agent_tag: bool = Field(default=True, alias="humanAgentTag")


_DEFAULT_RETENTION = Retention()


class RetentionSpec(_Spec):
    """How long the relay keeps each kind of data (seconds; the README's privacy table).
    The bounds are the relay's own (IGBRIDGE_RETENTION_*): a value it would refuse at
    start is refused here."""

    dedupe_seconds: float = Field(
        default=_DEFAULT_RETENTION.dedupe_seconds,
        alias="dedupeSeconds",
        ge=36 * 3600,
        le=90 * 86400,
    )
    dead_letter_seconds: float = Field(
        default=_DEFAULT_RETENTION.dead_letter_seconds,
        alias="deadLetterSeconds",
        ge=3600,
        le=365 * 86400,
    )
    dead_letter_payload_seconds: float = Field(
        default=_DEFAULT_RETENTION.dead_letter_payload_seconds,
        alias="deadLetterPayloadSeconds",
        ge=0,
        le=365 * 86400,
    )
    window_seconds: float = Field(
        default=_DEFAULT_RETENTION.window_seconds, alias="windowSeconds", ge=86400, le=90 * 86400
    )
    records_seconds: float = Field(
        default=_DEFAULT_RETENTION.records_seconds, alias="recordsSeconds", ge=3600, le=90 * 86400
    )

    @model_validator(mode="after")
    def _payload_within_dead_letters(self) -> RetentionSpec:
        if self.dead_letter_payload_seconds > self.dead_letter_seconds:
            raise ValueError("deadLetterPayloadSeconds must not exceed deadLetterSeconds")
        return self

    def env(self) -> dict[str, str]:
        """The relay's IGBRIDGE_RETENTION_* variables."""
        return {
            "IGBRIDGE_RETENTION_DEDUPE_SECONDS": _number(self.dedupe_seconds),
            "IGBRIDGE_RETENTION_DEAD_LETTER_SECONDS": _number(self.dead_letter_seconds),
            "IGBRIDGE_RETENTION_DEAD_LETTER_PAYLOAD_SECONDS": _number(
                self.dead_letter_payload_seconds
            ),
            "IGBRIDGE_RETENTION_WINDOW_SECONDS": _number(self.window_seconds),
            "IGBRIDGE_RETENTION_RECORDS_SECONDS": _number(self.records_seconds),
        }

    def status(self) -> dict[str, float]:
        """As ``status.retention`` shows it (the spec's names)."""
        return {
            "dedupeSeconds": self.dedupe_seconds,
            "deadLetterSeconds": self.dead_letter_seconds,
            "deadLetterPayloadSeconds": self.dead_letter_payload_seconds,
            "windowSeconds": self.window_seconds,
            "recordsSeconds": self.records_seconds,
        }


def _number(value: float) -> str:
    # 604800, not 604800.0: the env stays as written, so an operator upgrade rolls nothing.
    return str(int(value)) if float(value).is_integer() else str(value)


class ChannelSpec(_Spec):
    public_url: str = Field(alias="publicUrl")
    instagram: InstagramSpec
    genesys: GenesysSpec
    relay: RelaySpec = Field(default_factory=RelaySpec)
    # The relay's own model: a rule it would refuse is refused here, before a relay
    # crash-loops on it.
    guard: GuardRules = Field(default_factory=GuardRules)
    window: WindowSpec = Field(default_factory=WindowSpec)
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    deletion_policy: Literal["Delete", "Orphan"] = Field(default="Delete", alias="deletionPolicy")
    _guard_json: str = PrivateAttr(default="")

    @model_validator(mode="wrap")
    @classmethod
    def _keep_guard_as_written(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # The relay gets the rules as the channel wrote them: re-serialising the model
        # would turn 600 into 600.0 and so roll every relay on an operator upgrade.
        spec = handler(data)
        written = data.get("guard") if isinstance(data, Mapping) else None
        if isinstance(spec, ChannelSpec) and isinstance(written, Mapping) and written:
            spec._guard_json = json.dumps(written, sort_keys=True)
        return spec

    @property
    def guard_json(self) -> str:
        """``IGBRIDGE_GUARD``: empty when the channel sets no rules."""
        return self._guard_json

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def instagram_webhook_url(self) -> str:
        return f"{self.base_url}/webhooks/instagram"

    @property
    def genesys_webhook_url(self) -> str:
        return f"{self.base_url}/webhooks/genesys"

    @property
    def data_deletion_url(self) -> str:
        """Meta's data-deletion request callback (App Dashboard → Settings → Basic)."""
        return f"{self.base_url}/webhooks/instagram/data-deletion"


def parse_spec(raw: Mapping[str, Any]) -> ChannelSpec:
    """The spec as typed values; an invalid one is a SpecProblem naming the first field."""
    try:
        return ChannelSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise invalid_spec(f"spec.{where}: {err['msg']}") from None
