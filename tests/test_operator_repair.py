"""The operator keeps the Genesys integration whole: recreated with everything the spec
asks (flow on the recipient, content profile, messaging setting), following spec changes,
and never recreated by a resync that overlaps the channel's deletion. Through kopf and
kubectl on the cluster emulator, with the Genesys simulator; the drift decision as data."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from igbridge.operator.drift import Repair, integration_repair, secret_digest
from igbridge.operator.integrations import Integrations
from igbridge.operator.plan import DesiredIntegration
from igbridge.relay.genesys.auth import TokenProvider
from igbridge.relay.genesys.rest import GenesysRest
from igbridge.sandbox.faults import Fault
from igbridge.sandbox.genesys_schema import violations
from igbridge.sandbox.genesys_sim import GenesysSimulator
from igbridge.sandbox.server import serve_in_thread
from igbridge.sandbox.stack import Sandbox
from tests.cluster import Cluster, run_cluster
from tests.operator_harness import (
    NAMESPACE,
    run_operator,
    secrets_and_channel,
    status_of,
    wait_until,
)

INTEGRATIONS = "/api/v2/conversations/messaging/integrations/open"
URL = "https://shop.example.com/webhooks/genesys"
SECRET = "a-signing-secret-of-some-length"
SENT = secret_digest(SECRET)
GENESYS_SPEC = {
    "inboundFlowId": "flow-1",
    "supportedContentId": "sc-1",
    "messagingSettingId": "ms-1",
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with run_cluster(tmp_path) as c:
        yield c


def integration_id(cluster: Cluster) -> str:
    found = cluster.get("instagramchannels", NAMESPACE, "shop") or {}
    return str(found.get("status", {}).get("integrationId", ""))


def whole(sandbox: Sandbox, iid: str, content: str = "sc-1") -> bool:
    """The integration exists with the spec's content profile, messaging setting and URL,
    and the spec's flow is on its recipient."""
    found = sandbox.genesys.integrations.get(iid)
    if found is None:
        return False
    return (
        found.get("supportedContent") == {"id": content}
        and found.get("messagingSetting") == {"id": "ms-1"}
        and found.get("outboundNotificationWebhookUrl")
        == "https://shop.example.com/ig/webhooks/genesys"
        and sandbox.genesys.flow_assignments.get(found["recipient"]["id"]) == "flow-1"
    )


def create_synced(sandbox: Sandbox, cluster: Cluster, **spec: Any) -> None:
    manifests = secrets_and_channel(sandbox, **spec)
    manifests[2]["spec"]["genesys"].update(GENESYS_SPEC)
    for manifest in manifests:
        cluster.apply(manifest)
    wait_until(lambda: status_of(cluster, "Synced") == "True", what="Synced")


def test_an_integration_deleted_behind_the_operator_comes_back_whole(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    with run_operator(cluster):
        create_synced(sandbox, cluster)
        first = integration_id(cluster)
        assert whole(sandbox, first)
        # Someone deletes it in Genesys's admin UI; the next resync recreates it.
        del sandbox.genesys.integrations[first]
        wait_until(lambda: integration_id(cluster) not in ("", first), what="recreated")
        wait_until(lambda: whole(sandbox, integration_id(cluster)), what="recreated whole")
        assert list(sandbox.genesys.integrations) == [integration_id(cluster)]


def test_a_flow_or_profile_changed_in_genesys_or_the_spec_is_put_back(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    with run_operator(cluster):
        create_synced(sandbox, cluster)
        iid = integration_id(cluster)
        recipient = sandbox.genesys.integrations[iid]["recipient"]["id"]
        # Changed in Genesys: another flow on the recipient, the profile swapped.
        sandbox.genesys.flow_assignments[recipient] = "someone-elses-flow"
        sandbox.genesys.integrations[iid]["supportedContent"] = {"id": "sc-other"}
        wait_until(lambda: whole(sandbox, iid), what="flow and profile put back")
        # Changed in the spec: the integration follows.
        patched = cluster.kubectl(
            "patch",
            "igch",
            "shop",
            "--type",
            "merge",
            "-p",
            json.dumps({"spec": {"genesys": {"supportedContentId": "sc-2"}}}),
        )
        assert patched.returncode == 0, patched.stderr
        wait_until(lambda: whole(sandbox, iid, content="sc-2"), what="new content profile")
    assert list(sandbox.genesys.integrations) == [iid]  # repaired, never recreated


def test_no_create_once_deletion_has_begun(sandbox: Sandbox, cluster: Cluster) -> None:
    """A resync waiting on a slow Genesys when the channel is deleted: before, it found
    the integration gone (the delete handler had removed it) and created a new one."""
    with run_operator(cluster):
        create_synced(sandbox, cluster)
        created = list(sandbox.genesys.registry.created)
        slow = Fault(delay=2.0, count=1000, path_prefix=INTEGRATIONS, method="GET")
        sandbox.genesys.faults.add(slow)
        wait_until(lambda: sandbox.genesys.faults.injected >= 1, what="a slow call in flight")
        deleted = cluster.kubectl("delete", "igch", "shop", "--wait=false")
        assert deleted.returncode == 0, deleted.stderr
        wait_until(
            lambda: cluster.get("instagramchannels", NAMESPACE, "shop") is None,
            timeout=60,
            what="channel gone",
        )
        sandbox.genesys.faults.clear()
    assert sandbox.genesys.registry.created == created  # nothing created after the delete
    assert sandbox.genesys.integrations == {}


def test_the_recipient_flow_is_read_back_and_a_repair_is_a_valid_update() -> None:
    """The client against the simulator on loopback: a recipient's flow reads None until
    one is attached, the repair's PATCH is an OpenIntegrationUpdateRequest Genesys takes,
    and a deleted integration's recipient is gone with it."""
    sim = GenesysSimulator(create_delay=0.0)

    async def walk(url: str) -> list[str | None]:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            tokens = TokenProvider(http, url, sim.client_id, sim.client_secret)
            client = Integrations(GenesysRest(http, url, tokens))
            created = await client.create("igbridge-shop", URL, SECRET)
            iid, recipient = created["id"], created["recipient"]["id"]
            seen = [await client.recipient_flow(recipient)]
            repair = integration_repair(DESIRED, await client.wait_created(iid), seen[0], SENT)
            assert violations("OpenIntegrationUpdateRequest", {**repair.patch, "name": "x"}) == []
            await client.update(iid, repair.patch, name=created["name"])
            assert repair.flow is not None
            await client.attach_flow(*repair.flow)
            seen.append(await client.recipient_flow(recipient))
            await client.delete(iid)
            seen.append(await client.recipient_flow(recipient))
            return seen

    with serve_in_thread(sim.app) as server:
        assert asyncio.run(walk(server.url)) == [None, "flow-1", None]
    (stored,) = sim.registry.created
    assert stored not in sim.integrations
    assert sim.flow_assignments == {}


# -- the drift decision ----------------------------------------------------------------------

DESIRED = DesiredIntegration(
    name="igbridge-default-shop",
    webhook_url=URL,
    signing_secret=SECRET,
    supported_content_id="sc-1",
    messaging_setting_id="ms-1",
    inbound_flow_id="flow-1",
)
MATCHING: dict[str, Any] = {
    "id": "i-1",
    "name": "igbridge-default-shop",
    "outboundNotificationWebhookUrl": URL,
    "supportedContent": {"id": "sc-1", "name": "Default"},
    "messagingSetting": {"id": "ms-1"},
    "recipient": {"id": "r-1"},
}


@pytest.mark.parametrize(
    ("actual", "flow", "sent", "expected"),
    [
        (MATCHING, "flow-1", SENT, Repair({})),
        (
            {**MATCHING, "outboundNotificationWebhookUrl": "https://old.example.com/h"},
            "flow-1",
            SENT,
            Repair(
                {
                    "outboundNotificationWebhookUrl": URL,
                    "outboundNotificationWebhookSignatureSecretToken": SECRET,
                }
            ),
        ),
        (
            {
                k: v
                for k, v in MATCHING.items()
                if k not in ("supportedContent", "messagingSetting")
            },
            "flow-1",
            SENT,
            Repair(
                {
                    "supportedContent": {"id": "sc-1"},
                    "messagingSetting": {"id": "ms-1"},
                    "outboundNotificationWebhookSignatureSecretToken": SECRET,
                }
            ),
        ),
        (MATCHING, None, SENT, Repair({}, ("r-1", "flow-1"))),
        (MATCHING, "other-flow", SENT, Repair({}, ("r-1", "flow-1"))),
        (
            MATCHING,
            "flow-1",
            secret_digest("the-secret-before-regeneration"),
            Repair({"outboundNotificationWebhookSignatureSecretToken": SECRET}),
        ),
        (
            {k: v for k, v in MATCHING.items() if k != "recipient"},
            None,
            SENT,
            Repair({}),
        ),
        ({**MATCHING, "name": "renamed-by-hand"}, "flow-1", SENT, Repair({})),
    ],
    ids=[
        "nothing-differs",
        "webhook-url",
        "profile-and-setting-lost",
        "no-flow-on-recipient",
        "another-flow",
        "secret-regenerated",
        "no-recipient-yet",
        "adopted-name-kept",
    ],
)
def test_integration_repair(
    actual: dict[str, Any], flow: str | None, sent: str, expected: Repair
) -> None:
    assert integration_repair(DESIRED, actual, flow, sent) == expected


def test_what_the_spec_leaves_out_is_not_repaired() -> None:
    bare = DesiredIntegration("n", URL, SECRET)
    other = {**MATCHING, "supportedContent": {"id": "sc-9"}, "messagingSetting": {"id": "ms-9"}}
    assert integration_repair(bare, other, "any-flow", SENT) == Repair({})
    named = DesiredIntegration("wanted", URL, SECRET, enforce_name=True)
    assert integration_repair(named, other, None, SENT).patch["name"] == "wanted"
