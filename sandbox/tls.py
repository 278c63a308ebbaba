"""A throwaway certificate authority, so loopback servers can speak HTTPS in the sandbox.

The relay fetches media over HTTPS only; the Meta CDN simulator is served with these
files and clients trust ``ca`` (and nothing else changes about certificate checking).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class TLSFiles:
    ca: Path  # the CA certificate clients trust
    cert: Path  # the server certificate and its chain
    key: Path  # the server's private key

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this sandbox CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls(directory: Path) -> TLSFiles:
    """Write a fresh CA and a server certificate for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*SERVER_NAMES)
    files = TLSFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.key))
    files.key.chmod(0o600)
    with files.cert.open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    return files
