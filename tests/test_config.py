"""Start-up configuration: exactly the documented variables, one clear line for a bad one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from igbridge.relay.config import ConfigError, load_settings

BASE_ENV = {
    "IGBRIDGE_META_APP_SECRET": "app-secret-1",
    "IGBRIDGE_META_VERIFY_TOKEN": "verify-me",
    "IGBRIDGE_META_ACCESS_TOKEN": "EAAG-token",
    "IGBRIDGE_INSTAGRAM_ACCOUNT_ID": "17841400000000001",
    "IGBRIDGE_GENESYS_API_URL": "https://api.mypurecloud.ie",
    "IGBRIDGE_GENESYS_CLIENT_ID": "client-id",
    "IGBRIDGE_GENESYS_CLIENT_SECRET": "client-secret-value",
    "IGBRIDGE_GENESYS_INTEGRATION_ID": "integration-1",
    "IGBRIDGE_GENESYS_WEBHOOK_SECRET": "sixteen-chars-or-more",
}


def test_defaults_and_derived_login_url() -> None:
    s = load_settings(BASE_ENV)
    assert s.genesys_login == "https://login.mypurecloud.ie"
    assert s.store_url == "sqlite:///./igbridge.db"
    assert s.window_escalate_after == 72000
    assert s.human_agent_tag is True
    assert s.graph_base == "https://graph.facebook.com/v21.0"


def test_several_app_secrets_for_rotation() -> None:
    s = load_settings({**BASE_ENV, "IGBRIDGE_META_APP_SECRET": "old-secret, new-secret"})
    assert s.app_secrets == [b"old-secret", b"new-secret"]


def test_secret_read_from_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("from-a-mounted-secret\n", encoding="utf-8")
    env = {k: v for k, v in BASE_ENV.items() if k != "IGBRIDGE_GENESYS_CLIENT_SECRET"}
    env["IGBRIDGE_GENESYS_CLIENT_SECRET_FILE"] = str(secret_file)
    s = load_settings(env)
    assert s.genesys_client_secret.get_secret_value() == "from-a-mounted-secret"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"IGBRIDGE_META_VERIFY_TOKEN": None}, "IGBRIDGE_META_VERIFY_TOKEN: is required"),
        ({"IGBRIDGE_GENESYS_API_URL": "mypurecloud"}, "IGBRIDGE_GENESYS_API_URL:"),
        ({"IGBRIDGE_WINDOW_ESCALATE_AFTER": "soon"}, "IGBRIDGE_WINDOW_ESCALATE_AFTER:"),
        ({"IGBRIDGE_STORE_URL": "postgres://x"}, "IGBRIDGE_STORE_URL:"),
        ({"IGBRIDGE_GENESYS_WEBHOOK_SECRET": "short"}, "IGBRIDGE_GENESYS_WEBHOOK_SECRET:"),
        ({"IGBRIDGE_HUMAN_AGENT_TAG": "maybe"}, "IGBRIDGE_HUMAN_AGENT_TAG:"),
        (
            {"IGBRIDGE_META_ACCESS_TOKEN": None, "IGBRIDGE_META_ACCESS_TOKEN_FILE": "/nonexistent"},
            "IGBRIDGE_META_ACCESS_TOKEN_FILE: cannot read /nonexistent",
        ),
    ],
)
def test_bad_setting_names_the_variable(override: dict[str, str | None], expected: str) -> None:
    env = dict(BASE_ENV)
    for key, value in override.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value).startswith(expected)


def test_error_text_never_contains_a_secret() -> None:
    env = {**BASE_ENV, "IGBRIDGE_GENESYS_WEBHOOK_SECRET": "tiny-secret"}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert "tiny-secret" not in str(info.value)


def test_serve_with_a_missing_setting_exits_with_one_line() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "IGBRIDGE_GENESYS_CLIENT_ID"}
    env["PATH"] = "/usr/bin:/bin"
    proc = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "igbridge.relay",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["igbridge-relay: configuration error: IGBRIDGE_GENESYS_CLIENT_ID: is required"]


def test_store_prefix_keeps_channels_apart_by_default() -> None:
    assert load_settings(BASE_ENV).store_key_prefix == "igbridge"
    channel = {
        **BASE_ENV,
        "IGBRIDGE_CHANNEL_NAME": "shop",
        "IGBRIDGE_CHANNEL_NAMESPACE": "brand-a",
    }
    assert load_settings(channel).store_key_prefix == "igbridge:brand-a/shop"
    explicit = {**channel, "IGBRIDGE_STORE_PREFIX": "custom"}
    assert load_settings(explicit).store_key_prefix == "custom"


def test_a_mistyped_redis_url_is_refused_without_its_password() -> None:
    env = {**BASE_ENV, "IGBRIDGE_STORE_URL": "redis//:hunter2-pw@redis:6379/0"}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value).startswith("IGBRIDGE_STORE_URL:")
    assert "hunter2-pw" not in str(info.value)
    with pytest.raises(ConfigError, match="IGBRIDGE_LEASE_SECONDS"):
        load_settings({**BASE_ENV, "IGBRIDGE_LEASE_SECONDS": "0"})


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://:hunter2-pw@127.0.0.1:99999/0", "the port must be a number from 1 to 65535"),
        ("redis://:hunter2-pw@redis:notaport", "the port must be a number from 1 to 65535"),
        ("rediss://:hunter2-pw@redis:0/0", "the port must be a number from 1 to 65535"),
        ("redis://:hunter2-pw@:6379/0", "names no host"),
        ("redis://:hunter2-pw@redis:6379/zero", "the database must be a number"),
    ],
)
def test_serve_with_a_bad_redis_url_exits_2_with_one_line_and_no_password(
    url: str, why: str
) -> None:
    env = {**BASE_ENV, "IGBRIDGE_STORE_URL": url, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "igbridge.relay", "serve", "--host", "127.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("igbridge-relay: configuration error: IGBRIDGE_STORE_URL: ")
    assert why in line
    assert "hunter2-pw" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "url", ["redis://redis:6379/0", "rediss://:pw@redis.example:6380", "redis://[::1]:6379/2"]
)
def test_well_formed_redis_urls_are_taken(url: str) -> None:
    assert load_settings({**BASE_ENV, "IGBRIDGE_STORE_URL": url}).store_url == url


@pytest.mark.parametrize(
    ("hosts", "accepted"),
    [
        ("lookaside.fbsbx.com, *.fbcdn.net", True),
        ("127.0.0.1:8443,[::1]:8443", True),
        ("cdn.example:notaport", False),
        ("cdn.example/path", False),
        ("user@cdn.example", False),
    ],
)
def test_media_allow_list_entries_are_hosts_with_an_optional_port(
    hosts: str, accepted: bool
) -> None:
    env = {**BASE_ENV, "IGBRIDGE_MEDIA_ALLOWED_HOSTS": hosts}
    if accepted:
        assert load_settings(env).media_allowed_hosts
    else:
        with pytest.raises(ConfigError, match="IGBRIDGE_MEDIA_ALLOWED_HOSTS: "):
            load_settings(env)
