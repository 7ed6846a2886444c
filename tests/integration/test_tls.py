"""TLS to the broker: the agent trusts only the CA it is configured with, and can present a
client certificate. Certificates are made here with ``cryptography``; Mosquitto serves them."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.keys import SigningKey
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Listener,
    command,
    free_port,
    occurrences,
    provision,
    wait_for,
    wait_state,
)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


class Authority:
    """A small certificate authority for the test."""

    def __init__(self, name: str, directory: Path) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.file = directory / f"{name}.crt"
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, name: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        issued.key.chmod(0o600)
        return issued


@dataclass(frozen=True)
class Pki:
    ca: Authority
    other_ca: Authority
    client: Issued


@dataclass(frozen=True)
class TlsBroker:
    """A Mosquitto with a plain loopback listener (for the test's own client), a TLS
    listener and a TLS listener that requires a client certificate."""

    broker: Broker
    tls_port: int
    mutual_port: int


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = Authority("ward-ca", directory)
    other = Authority("unrelated-ca", directory)
    ca.issue(
        "server",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = ca.issue("q10-p12-bang-03", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return Pki(ca, other, client)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[TlsBroker]:
    d = pki.ca.directory
    tls_port, mutual_port = free_port(), free_port()
    files = f"cafile {pki.ca.file}\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
    extra = (
        f"listener {tls_port} 127.0.0.1\n{files}"
        f"listener {mutual_port} 127.0.0.1\n{files}require_certificate true\n"
    )
    broker = Broker(tmp_path / "broker", extra=extra + "log_type all\n").start()

    def accepts(port: int) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(lambda: accepts(tls_port) and accepts(mutual_port), 10, "the TLS listeners")
    yield TlsBroker(broker, tls_port, mutual_port)
    broker.stop()


def _device(
    tmp: Path, tb: TlsBroker, key: SigningKey, device_id: str, port: int, tls: str
) -> AgentProcess:
    device = provision(
        tmp,
        tb.broker,
        key,
        device_id=device_id,
        mqtt_url=f"mqtts://127.0.0.1:{port}",
        mqtt_extra=tls,
    )
    return AgentProcess(device)


def test_agent_connects_over_tls_with_the_right_ca(
    tmp_path: Path, tls_broker: TlsBroker, pki: Pki, signing_key: SigningKey
) -> None:
    agent = _device(
        tmp_path,
        tls_broker,
        signing_key,
        "q10-p12-bang-01",
        tls_broker.tls_port,
        f'ca_file = "{pki.ca.file}"\n',
    ).start()
    try:
        subs = [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"]
        with Listener(tls_broker.broker, subs) as listener:
            # Online (birth) means its subscriptions are in place: a command now reaches it.
            wait_state(listener, "q10-p12-bang-01", online=True, timeout=15)
            topic, payload, doc = command(signing_key, "ping", target="dev:q10-p12-bang-01")
            listener.publish(topic, payload)
            assert listener.wait_ack(doc["id"], timeout=15)["status"] == "done"
    finally:
        assert agent.stop() == 0


def test_agent_refuses_a_broker_signed_by_another_ca(
    tmp_path: Path, tls_broker: TlsBroker, pki: Pki, signing_key: SigningKey
) -> None:
    agent = _device(
        tmp_path,
        tls_broker,
        signing_key,
        "q10-p12-bang-02",
        tls_broker.tls_port,
        f'ca_file = "{pki.other_ca.file}"\n',
    ).start()
    try:
        subs = [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"]
        with Listener(tls_broker.broker, subs) as listener:
            wait_for(
                lambda: occurrences(agent.output, "certificate verify failed"),
                15,
                "a certificate verification failure in the agent's log",
            )
            topic, payload, doc = command(signing_key, "ping", target="dev:q10-p12-bang-02")
            listener.publish(topic, payload)
            time.sleep(2.5)  # several reconnect attempts (reconnect_max_s is 1 s)
            assert listener.acks(doc["id"]) == []
            assert listener.json_on("/dev/q10-p12-bang-02/state") == [], "it never came online"
        assert occurrences(agent.output, "connected to the broker") == 0
        assert occurrences(agent.output, "certificate verify failed") >= 2, "it keeps retrying"
    finally:
        assert agent.stop() == 0


def test_client_certificate_authentication(
    tmp_path: Path, tls_broker: TlsBroker, pki: Pki, signing_key: SigningKey
) -> None:
    with_cert = _device(
        tmp_path,
        tls_broker,
        signing_key,
        "q10-p12-bang-03",
        tls_broker.mutual_port,
        f'ca_file = "{pki.ca.file}"\ncert_file = "{pki.client.cert}"\n'
        f'key_file = "{pki.client.key}"\n',
    ).start()
    without_cert = _device(
        tmp_path,
        tls_broker,
        signing_key,
        "q10-p12-bang-04",
        tls_broker.mutual_port,
        f'ca_file = "{pki.ca.file}"\n',
    ).start()
    try:
        subs = [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"]
        with Listener(tls_broker.broker, subs) as listener:
            wait_state(listener, "q10-p12-bang-03", online=True, timeout=15)
            topic, payload, doc = command(signing_key, "ping", target="dev:q10-p12-bang-03")
            listener.publish(topic, payload)
            assert listener.wait_ack(doc["id"])["status"] == "done"

            topic, payload, refused = command(signing_key, "ping", target="dev:q10-p12-bang-04")
            listener.publish(topic, payload)
            time.sleep(2.5)
            assert listener.acks(refused["id"]) == []
            assert listener.json_on("/dev/q10-p12-bang-04/state") == []
        assert occurrences(without_cert.output, "connected to the broker") == 0
        # TLS 1.3 refuses the missing certificate only after the handshake (as an alert, or
        # as a plain EOF when the broker closes first): the log still says what happened.
        assert occurrences(without_cert.output, "closed the connection before accepting it") >= 1
    finally:
        assert with_cert.stop() == 0
        assert without_cert.stop() == 0
