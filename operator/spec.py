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


class InstagramSpec(_Spec):
    account_id: str = Field(alias="accountId")
    graph_url: str = Field(default="https://graph.facebook.com", alias="graphUrl")
    api_version: str = Field(default="v21.0", alias="apiVersion")
    credentials: MetaCredentialsRef = Field(alias="credentialsSecretRef")
    subscribe_webhooks: bool = Field(default=True, alias="subscribeWebhooks")


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


class ChannelSpec(_Spec):
    public_url: str = Field(alias="publicUrl")
    instagram: InstagramSpec
    genesys: GenesysSpec
    relay: RelaySpec = Field(default_factory=RelaySpec)
    # The relay's own model: a rule it would refuse is refused here, before a relay
    # crash-loops on it.
    guard: GuardRules = Field(default_factory=GuardRules)
    window: WindowSpec = Field(default_factory=WindowSpec)
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


def parse_spec(raw: Mapping[str, Any]) -> ChannelSpec:
    """The spec as typed values; an invalid one is a SpecProblem naming the first field."""
    try:
        return ChannelSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise invalid_spec(f"spec.{where}: {err['msg']}") from None
