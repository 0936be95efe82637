"""Shared pytest set-up: async tests run through anyio's pytest plugin.

Mark a test ``@pytest.mark.anyio``; it runs under the backends of the ``anyio_backend``
fixture (asyncio by default). A test module or directory that also applies to trio
overrides ``anyio_backend`` with ``params=["asyncio", "trio"]``.
"""

import ssl
import subprocess

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(certificate, key) files: a fresh self-signed certificate for 127.0.0.1 and
    localhost, made once per test run with the openssl command."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
def tls_contexts(tls_files: tuple[str, str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with the certificate of ``tls_files``, client context that
    trusts it)."""
    cert, key = tls_files
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=cert)
