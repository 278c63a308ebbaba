"""Redis Sentinel store URLs: what they name, what a bad one is told, and that the
password never shows (named cases; one through ``serve`` as an operator meets it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from igbridge.relay.config import ConfigError, load_settings
from igbridge.relay.redis_url import SentinelTarget, parse_sentinel, redacted
from tests.test_config import BASE_ENV

SECRET = "hunter2-pw"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (
            f"redis+sentinel://:{SECRET}@s1:26379,s2:26380/shop/2",
            SentinelTarget((("s1", 26379), ("s2", 26380)), "shop", 2, None, SECRET, None),
        ),
        (
            "redis+sentinel://s1,[::1]:5000/mymaster",
            SentinelTarget((("s1", 26379), ("::1", 5000)), "mymaster", 0, None, None, None),
        ),
        (
            "redis+sentinel://app:p%40ss@s1:26379/shop/0?sentinel_password=sp",
            SentinelTarget((("s1", 26379),), "shop", 0, "app", "p@ss", "sp"),
        ),
    ],
)
def test_a_sentinel_url_names_its_sentinels_service_db_and_credentials(
    url: str, target: SentinelTarget
) -> None:
    assert parse_sentinel(url) == target
    assert load_settings({**BASE_ENV, "IGBRIDGE_STORE_URL": url}).store_url == url


def test_the_redacted_form_keeps_the_addresses_and_drops_the_credentials() -> None:
    url = f"redis+sentinel://:{SECRET}@s1:26379,s2/shop/1?sentinel_password={SECRET}"
    assert redacted(url) == "redis+sentinel://s1:26379,s2:26379/shop/1"
    assert redacted(f"redis://:{SECRET}@redis:6379/0") == "redis://redis:6379/0"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"redis+sentinel://:{SECRET}@/shop/0", "names no sentinel"),
        (f"redis+sentinel://:{SECRET}@s1:26379", "names no service"),
        (f"redis+sentinel://:{SECRET}@s1:99999/shop/0", "port must be a number from 1 to 65535"),
        (f"redis+sentinel://:{SECRET}@s1:x/shop/0", "port must be a number from 1 to 65535"),
        (f"redis+sentinel://:{SECRET}@s1/shop/zero", "the database must be a number"),
        (f"redis+sentinel://:{SECRET}@s1/shop/0?timeout=3", "unknown option 'timeout'"),
    ],
)
def test_a_bad_sentinel_url_is_one_reason_without_the_password(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**BASE_ENV, "IGBRIDGE_STORE_URL": url})
    assert str(info.value).startswith("IGBRIDGE_STORE_URL: ")
    assert why in str(info.value)
    assert SECRET not in str(info.value)


def test_serve_with_a_bad_sentinel_url_exits_2_with_one_line() -> None:
    url = f"redis+sentinel://:{SECRET}@s1:0/shop/0"
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "igbridge.relay", "serve", "--host", "127.0.0.1"],
        env={**BASE_ENV, "IGBRIDGE_STORE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("igbridge-relay: configuration error: IGBRIDGE_STORE_URL: ")
    assert "port must be a number" in line
    assert SECRET not in proc.stdout + proc.stderr
