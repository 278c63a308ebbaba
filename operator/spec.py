"""The InstagramChannel spec as typed values, with the CRD's defaults applied.

The CRD (charts/igbridge/crds/) validates and defaults on a real apiserver; parsing here
applies the same defaults so the operator behaves the same where none does (tests).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from igbridge.relay.config import derive_login_url


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
    guard: dict[str, Any] = Field(default_factory=dict)
    window: WindowSpec = Field(default_factory=WindowSpec)
    deletion_policy: Literal["Delete", "Orphan"] = Field(default="Delete", alias="deletionPolicy")

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def instagram_webhook_url(self) -> str:
        return f"{self.base_url}/webhooks/instagram"

    @property
    def genesys_webhook_url(self) -> str:
        return f"{self.base_url}/webhooks/genesys"
