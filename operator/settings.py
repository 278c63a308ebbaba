"""The operator's own configuration: ``IGBRIDGE_*`` variables the chart sets, read once
when the operator starts. A bad value stops it with one line naming the variable."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from igbridge.relay.config import ENV_PREFIX, ConfigError, HandedOverSettings

from .builders import IngressOptions, PodOptions


class OperatorSettings(HandedOverSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # The relay image for channels whose spec names none.
    relay_image: str = "ghcr.io/igbridge/igbridge:latest"
    # How often every channel is checked again (drift, Meta's subscription, a silent relay).
    operator_resync_seconds: float = Field(default=60.0, gt=0)
    # A missing Secret or refused credentials: someone must act; look again at this pace.
    operator_recheck_seconds: float = Field(default=30.0, gt=0)
    # How long the relay may stay silent before the channel shows it unavailable.
    relay_grace_seconds: float = Field(default=90.0, gt=0)
    # How long a pre-flight verdict on a Meta token stands (a changed Secret is checked
    # at once): Meta is asked at most this often per channel.
    credentials_check_seconds: float = Field(default=600.0, gt=0)
    # Instagram Login tokens live 60 days; refresh when fewer than this many seconds
    # remain, and warn (TokenFresh=False) if that fails.
    token_refresh_margin_seconds: float = Field(default=7 * 86400.0, gt=0)
    # The operator's /metrics (token expiry per channel); 0: not served.
    operator_metrics_port: int = Field(default=0, ge=0, le=65535)
    # An Ingress per channel, only when a class is named.
    channel_ingress_class: str | None = None
    channel_ingress_annotations: dict[str, str] = Field(default_factory=dict)
    # e.g. "{name}-tls"; empty: no TLS section.
    channel_ingress_tls_secret: str = ""
    # Every relay pod's pull secrets and scheduling (the chart's imagePullSecrets and
    # relayPods), one JSON object: see builders.PodOptions.
    relay_pod: PodOptions = Field(default_factory=PodOptions)

    @field_validator("relay_pod", mode="before")
    @classmethod
    def _json(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError:
                raise ValueError("must be a JSON object") from None
        return value

    @field_validator("channel_ingress_annotations", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError:
                raise ValueError("must be a JSON object of strings") from None
        return value

    @property
    def ingress(self) -> IngressOptions | None:
        if not self.channel_ingress_class:
            return None
        return IngressOptions(
            class_name=self.channel_ingress_class,
            annotations=dict(self.channel_ingress_annotations),
            tls_secret_template=self.channel_ingress_tls_secret,
        )


def load_operator_settings(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Settings from the environment, or ConfigError naming the first bad variable."""
    env = os.environ if environ is None else environ
    relevant = {k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    try:
        return OperatorSettings.model_validate(relevant)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        # Inside a JSON variable, which key: IGBRIDGE_RELAY_POD: nodeselector: ...
        inner = ".".join(str(p) for p in err["loc"][1:])
        where = f"{inner}: " if inner else ""
        raise ConfigError(f"{ENV_PREFIX}{field.upper()}: {where}{err['msg']}") from None
