"""TLS verification modes against a real HTTPS server whose certificate names another host."""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import Config
from comms.errors import TLSFailure
from comms.http import make_session, send, user_agent
from tests.comms.helpers import captured_logs


def _cert(subject: str, issuer_key, issuer_name, key, *, ca: bool) -> x509.Certificate:  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )  # fmt: skip
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = self.headers.get("User-Agent", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a certificate for 'server.test' from a private CA."""
    d = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentbus test CA")])
    ca = _cert("agentbus test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("server.test", ca_key, ca_name, key, ca=False)
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "server.pem", d / "server.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", d / "ca.pem"
    server.shutdown()
    server.server_close()


def get(config: Config, url: str, **kw: object) -> str:
    with make_session(config, **kw) as session:  # type: ignore[arg-type]
        return send(session, "GET", url + "/", timeout=(5, 5)).text


def test_full_checks_the_hostname(make_config: Callable[..., Config], https_server) -> None:  # type: ignore[no-untyped-def]
    url, ca = https_server
    config = make_config({"agent": {"verification_mode": "full", "ca_file": str(ca)}})
    with pytest.raises(
        TLSFailure,
        match="TLS check of https://127.0.0.1:[0-9]+ failed: .*(IP address mismatch|match)",
    ) as info:
        get(config, url)
    assert info.value.exit_code == 3


def test_certificate_checks_the_chain_not_the_hostname(
    make_config: Callable[..., Config], https_server
) -> None:  # type: ignore[no-untyped-def]
    url, ca = https_server
    config = make_config({"agent": {"verification_mode": "certificate", "ca_file": str(ca)}})
    assert get(config, url) == user_agent()


def test_certificate_still_refuses_an_untrusted_chain(
    make_config: Callable[..., Config], https_server
) -> None:  # type: ignore[no-untyped-def]
    url, _ = https_server
    config = make_config({"agent": {"verification_mode": "certificate"}})  # system bundle
    with pytest.raises(TLSFailure, match="certificate"):
        get(config, url)


def test_none_checks_nothing_and_says_so(make_config: Callable[..., Config], https_server) -> None:  # type: ignore[no-untyped-def]
    url, _ = https_server
    with captured_logs() as logs:
        assert get(make_config({"agent": {"verification_mode": "none"}}), url) == user_agent()
    assert any("TLS verification is OFF" in line for line in logs)


def test_mode_override_for_register(make_config: Callable[..., Config], https_server) -> None:  # type: ignore[no-untyped-def]
    url, ca = https_server
    config = make_config({"agent": {"verification_mode": "full"}})
    assert get(config, url, verification_mode="certificate", ca_file=str(ca)) == user_agent()
