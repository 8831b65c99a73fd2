"""Fixtures shared by test modules."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from edited_project import project  # noqa: F401  (a fixture of test_explain and test_accept)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a real S3 API, in a thread of this process), for the tests' whole session;
    its URL. Buckets are made by the tests (credentials: any)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:  # a free port; moto's server takes a fixed one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
