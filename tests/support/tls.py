"""A throwaway certificate authority for TLS tests (trustme): one server certificate for 127.0.0.1 and localhost.

A test module takes the ``certificate`` fixture by importing it as itself (pytest finds fixtures a module
imports; ``as certificate`` tells the linters the name is meant to be there):
``from tests.support.tls import certificate as certificate``.
"""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest
import trustme

LOOPBACK = "127.0.0.0/8"


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A server's certificate chain and key, and the CA file a client trusts them by."""

    ca_file: Path  # the CA's certificate alone: what TIDINGS_HTTP_CA_FILE and TIDINGS_SMTP_CA_FILE name
    chain_file: Path  # the server's certificate, then the CA's
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.chain_file, self.key_file)
        return context

    def https_settings(self) -> dict[str, str]:
        """The settings that let Tidings reach loopback over HTTPS and trust this certificate."""
        return {"TIDINGS_ALLOW_PRIVATE_NETWORKS": LOOPBACK, "TIDINGS_HTTP_CA_FILE": str(self.ca_file)}


def make_certificate(directory: Path) -> Certificate:
    """A new CA, and a certificate it signed for 127.0.0.1 and localhost, written as PEM files in ``directory``."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    certificate = Certificate(directory / "ca.pem", directory / "chain.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(certificate.ca_file))
    certificate.chain_file.write_bytes(b"".join(pem.bytes() for pem in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(certificate.key_file))
    return certificate


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """The test CA and its certificate for 127.0.0.1 and localhost."""
    return make_certificate(tmp_path_factory.mktemp("tls"))
