"""The Talos API client against an in-process apid over real mutual TLS."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from provisioner.talos.api import (
    AdminCredentials,
    TalosAlreadyBootstrappedError,
    TalosApiSettings,
    TalosClient,
    TalosNotReadyError,
    TalosPermissionError,
    TalosReplyError,
    TalosTimeoutError,
    TalosUnavailableError,
)
from provisioner.talos.api.pb.machine import machine_pb2
from provisioner.talos.pki import CertAndKey, LeafSpec, issue_leaf, new_ca, subject_name
from tests.talos.api.fake_apid import KUBECONFIG, FakeApid, kubeconfig_archive, server_certificate


@pytest.fixture(scope="module")
def os_ca() -> CertAndKey:
    return new_ca("ed25519", "talos", datetime.now(UTC) - timedelta(hours=1))


@pytest.fixture(scope="module")
def creds(os_ca: CertAndKey) -> AdminCredentials:
    return AdminCredentials.issue(os_ca, datetime.now(UTC))


@pytest.fixture
async def apid(os_ca: CertAndKey) -> AsyncIterator[FakeApid]:
    node = FakeApid()
    await node.start(os_ca, server_certificate(os_ca))
    try:
        yield node
    finally:
        await node.stop()


def settings(node: FakeApid, timeout: float = 5.0) -> TalosApiSettings:
    return TalosApiSettings(port=node.port, timeout=timeout, kubeconfig_timeout=timeout)


async def test_version_decodes(apid: FakeApid, creds: AdminCredentials) -> None:
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        version = await client.version()
    assert version.tag == "v1.13.9"
    assert version.hostname == "node-1"
    assert (version.platform, version.mode, version.arch) == ("metal", "metal", "amd64")


async def test_bootstrap_once_then_already_exists(apid: FakeApid, creds: AdminCredentials) -> None:
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        await client.bootstrap()
        with pytest.raises(TalosAlreadyBootstrappedError) as err:
            await client.bootstrap()
    assert apid.bootstrapped
    assert [name for name, _ in apid.calls] == ["Bootstrap", "Bootstrap"]
    request = apid.calls[0][1]
    assert not request.recover_etcd
    assert not request.recover_skip_hash_check
    message = str(err.value)
    assert "already bootstrapped" in message
    assert "ALREADY_EXISTS: etcd data directory is not empty" in message
    assert f"127.0.0.1:{apid.port}" in message


async def test_bootstrap_recover_fields_reach_the_node(apid: FakeApid, creds: AdminCredentials) -> None:
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        await client.bootstrap(recover_etcd=True, recover_skip_hash_check=True)
    request = apid.calls[0][1]
    assert request.recover_etcd
    assert request.recover_skip_hash_check


async def test_service_list_decodes(apid: FakeApid, creds: AdminCredentials) -> None:
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        services = await client.service_list()
    assert [s.id for s in services] == ["etcd", "kubelet"]
    etcd, kubelet = services
    assert etcd.state == "Running"
    assert etcd.healthy
    assert not etcd.health_unknown
    assert etcd.last_change == datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    assert kubelet.health_unknown
    assert not kubelet.healthy
    assert kubelet.last_message == "waiting"
    assert kubelet.last_change is None


async def test_etcd_member_list_decodes(apid: FakeApid, creds: AdminCredentials) -> None:
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        members = await client.etcd_member_list(query_local=True)
    assert apid.calls[0][1].query_local
    first, learner = members
    assert first.id == 0x8E9E05C52164694D  # a uint64 above 2**63 survives
    assert first.hostname == "node-1"
    assert first.peer_urls == ("https://10.0.0.11:2380",)
    assert first.client_urls == ("https://10.0.0.11:2379",)
    assert not first.is_learner
    assert learner.is_learner


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1 << 20])
async def test_kubeconfig_stream_assembled(apid: FakeApid, creds: AdminCredentials, chunk_size: int) -> None:
    apid.chunk_size = chunk_size
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        kubeconfig = await client.kubeconfig()
    assert kubeconfig == KUBECONFIG


async def test_kubeconfig_without_file_is_refused(apid: FakeApid, creds: AdminCredentials) -> None:
    from provisioner.talos.api import KubeconfigError

    apid.kubeconfig = kubeconfig_archive(name="talosconfig")
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        with pytest.raises(KubeconfigError, match="no 'kubeconfig' file"):
            await client.kubeconfig()


async def test_reboot_and_reset_requests(apid: FakeApid, creds: AdminCredentials) -> None:
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        await client.reboot()
        await client.reboot(mode="powercycle")
        await client.reset()
        await client.reset(graceful=False, reboot=False, wipe="user-disks", user_disks=("/dev/sdb",))
    (_, r1), (_, r2), (_, reset), (_, reset2) = apid.calls
    assert r1.mode == machine_pb2.RebootRequest.DEFAULT
    assert r2.mode == machine_pb2.RebootRequest.POWERCYCLE
    assert reset.graceful
    assert reset.reboot
    assert reset.mode == machine_pb2.ResetRequest.SYSTEM_DISK
    assert list(reset.system_partitions_to_wipe) == []
    assert not reset2.graceful
    assert not reset2.reboot
    assert reset2.mode == machine_pb2.ResetRequest.USER_DISKS
    assert list(reset2.user_disks_to_wipe) == ["/dev/sdb"]


async def test_role_other_than_admin_is_permission_denied(apid: FakeApid, os_ca: CertAndKey) -> None:
    spec = LeafSpec(subject=subject_name(("os:reader",)), validity=timedelta(hours=1), client_auth=True)
    reader = AdminCredentials(
        ca_crt=os_ca.crt,
        client=issue_leaf(os_ca, spec, datetime.now(UTC) - timedelta(minutes=1)),
        not_after=datetime.now(UTC) + timedelta(hours=1),
        lifetime=timedelta(hours=1),
    )
    async with TalosClient("127.0.0.1", reader, settings(apid)) as client:
        with pytest.raises(TalosPermissionError) as err:
            await client.bootstrap()
    assert "PERMISSION_DENIED: not authorized" in str(err.value)
    assert "os:admin" in str(err.value)
    assert apid.calls == []
    assert not apid.bootstrapped


async def test_client_cert_from_another_ca_is_refused(apid: FakeApid, os_ca: CertAndKey) -> None:
    other_ca = new_ca("ed25519", "talos", datetime.now(UTC) - timedelta(hours=1))
    stranger = AdminCredentials.issue(other_ca, datetime.now(UTC))
    # Trust the right server CA, but present a client certificate from another cluster.
    mixed = AdminCredentials(
        ca_crt=os_ca.crt, client=stranger.client, not_after=stranger.not_after, lifetime=stranger.lifetime
    )
    async with TalosClient("127.0.0.1", mixed, settings(apid, timeout=3.0)) as client:
        with pytest.raises(TalosUnavailableError) as err:
            await client.version()
    # TLS 1.3: the client learns of the refusal when the server closes the connection.
    assert err.value.code == "UNAVAILABLE"
    assert apid.calls == []


async def test_server_cert_from_another_ca_is_refused(os_ca: CertAndKey, creds: AdminCredentials) -> None:
    other_ca = new_ca("ed25519", "talos", datetime.now(UTC) - timedelta(hours=1))
    node = FakeApid()
    await node.start(os_ca, server_certificate(other_ca))
    try:
        async with TalosClient("127.0.0.1", creds, settings(node, timeout=3.0)) as client:
            with pytest.raises(TalosUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.version()
    finally:
        await node.stop()
    assert node.calls == []


async def test_server_cert_without_the_dialled_ip_is_refused(
    os_ca: CertAndKey, creds: AdminCredentials
) -> None:
    # Signed by the right CA but for another address: talosctl checks the IP SAN too.
    node = FakeApid()
    await node.start(os_ca, server_certificate(os_ca, ips=("10.9.9.9",), dns=("node-1.example",)))
    try:
        async with TalosClient("127.0.0.1", creds, settings(node, timeout=3.0)) as client:
            with pytest.raises(TalosUnavailableError, match="Hostname Verification"):
                await client.version()
    finally:
        await node.stop()
    assert node.calls == []


async def test_nothing_listening_is_unavailable(creds: AdminCredentials) -> None:
    node = FakeApid()
    async with TalosClient("127.0.0.1", creds, TalosApiSettings(port=1, timeout=3.0)) as client:
        with pytest.raises(TalosUnavailableError, match=r"on 127\.0\.0\.1:1:"):
            await client.version()
    assert node.calls == []


async def test_deadline_exceeded(apid: FakeApid, creds: AdminCredentials) -> None:
    apid.delay = 3.0
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        started = time.monotonic()
        with pytest.raises(TalosTimeoutError, match="deadline") as err:
            await client.version(timeout=0.3)
        elapsed = time.monotonic() - started
    assert err.value.code == "DEADLINE_EXCEEDED"
    assert elapsed < 2.5  # the per-call deadline, not the node's 3 s


async def test_failed_precondition_is_not_ready(apid: FakeApid, creds: AdminCredentials) -> None:
    apid.abort = (grpc.StatusCode.FAILED_PRECONDITION, "bootstrap is not available yet")
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        with pytest.raises(TalosNotReadyError, match="bootstrap is not available yet"):
            await client.bootstrap()


async def test_error_in_reply_metadata_raises(apid: FakeApid, creds: AdminCredentials) -> None:
    apid.reply_error = "rpc error: code = Unavailable desc = connection refused"
    async with TalosClient("127.0.0.1", creds, settings(apid)) as client:
        with pytest.raises(TalosReplyError, match="connection refused"):
            await client.service_list()
        with pytest.raises(TalosReplyError, match="connection refused"):
            await client.reset()


async def test_call_outside_context_is_an_error(creds: AdminCredentials) -> None:
    client = TalosClient("127.0.0.1", creds)
    with pytest.raises(RuntimeError, match="async with"):
        await client.version()


async def test_kubeconfig_stream_has_a_deadline(apid: FakeApid, creds: AdminCredentials) -> None:
    apid.delay = 3.0
    quick = TalosApiSettings(port=apid.port, timeout=5.0, kubeconfig_timeout=0.3)
    async with TalosClient("127.0.0.1", creds, quick) as client:
        started = time.monotonic()
        with pytest.raises(TalosTimeoutError, match="Talos Kubeconfig on"):
            await client.kubeconfig()
        assert time.monotonic() - started < 2.5
