"""Bad requests get API answers; nothing a client sends brings the server down."""

from __future__ import annotations

import asyncio
import io

import pytest

from .helpers import Harness


async def test_unknown_paths_get_a_json_404(harness: Harness) -> None:
    for path in ("/", "/personnel/v1/employee", "/personnel/v2/employee-ids", "/x/" * 50):
        reply = await harness.client.get(path)
        assert reply.status == 404, path
        assert "message" in reply.json()
    assert harness.sim.stats()["by_endpoint"]["other"] == {"404": 4}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/personnel/v1/employee-ids", "GET"),
        ("POST", "/personnel/v1/employee-ids", "GET"),
        ("GET", "/authentication/v1/token", "POST"),
        ("PUT", "/personnel/v1/employees/ABCDEFGHIJKL", "GET, PATCH"),
        ("DELETE", "/personnel/v1/employees/ABCDEFGHIJKL", "GET, PATCH"),
        ("GET", "/personnel/v1/employees", "POST"),
        ("GET", "/personnel/v1/employees/ABCDEFGHIJKL/terminations", "POST"),
    ],
)
async def test_wrong_methods_get_a_json_405(
    harness: Harness, method: str, path: str, allow: str
) -> None:
    reply = await harness.client.call(method, path)
    assert reply.status == 405
    assert reply.headers["Allow"] == allow
    assert "not allowed" in reply.json()["message"]


async def test_an_oversized_body_gets_a_json_413(harness: Harness) -> None:
    reply = await harness.client.call(
        "POST", "/personnel/v1/employees", data=io.BytesIO(b"{" + b" " * 2_000_000 + b"}")
    )
    assert reply.status == 413
    assert reply.json()["message"]


async def test_a_handler_bug_becomes_a_json_500_and_the_server_carries_on(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = harness.sim._runtime.store

    def broken(index: int, *, sensitive: bool) -> dict[str, object]:
        raise RuntimeError("simulated bug")

    employee_id = (await harness.client.all_ids())[0]
    monkeypatch.setattr(store, "profile", broken)
    reply = await harness.client.get(f"/personnel/v1/employees/{employee_id}")
    assert reply.status == 500
    assert reply.json() == {"message": "Internal server error"}
    assert "simulated bug" in caplog.text
    monkeypatch.undo()
    assert (await harness.client.get(f"/personnel/v1/employees/{employee_id}")).status == 200


GARBAGE = [
    b"\x00\x01\x02\x03garbage\r\n\r\n",
    b"GET /personnel/v1/employee-ids HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"POST /authentication/v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n\xff\xfe",
    b"GET /" + b"A" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /personnel/v1/employee-ids HTTP/1.1\r\n" + b"X: y\r\n" * 500 + b"\r\n",
    b"PATCH /personnel/v1/employees/%ZZ HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_garbage_on_the_wire_does_not_kill_the_server(
    harness: Harness, garbage: bytes
) -> None:
    host, port = harness.sim.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(garbage)
        await writer.drain()
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), timeout=5)
        if answer:  # an answer, if any, is HTTP
            assert answer.startswith(b"HTTP/1.")
    finally:
        writer.close()
        await writer.wait_closed()
    assert (await harness.client.get("/personnel/v1/employee-ids")).status == 200


async def test_odd_but_wellformed_inputs_get_4xx(harness: Harness) -> None:
    client = harness.client
    odd = [
        "/personnel/v1/employee-ids?page=" + "9" * 5000,
        "/personnel/v1/employee-ids?per-page=%F0%9F%92%A9",
        "/personnel/v1/employee-ids?page=1&page=2&per-page=٣",
        "/personnel/v1/employees/%F0%9F%92%A9%F0%9F%92%A9%F0%9F%92%A9",
        "/personnel/v1/employee-changes?startDate=9999-12-31&endDate=9999-12-31",
        "/personnel/v1/employee-changes?startDate=0001-01-01T00:00:00%2B14:00&endDate=0001-01-02",
    ]
    for path in odd:
        reply = await client.get(path)
        assert 400 <= reply.status < 500 or reply.status == 200, path
        reply.json()
    token_junk = await client.raw(
        "POST",
        "/authentication/v1/token",
        data=b"grant_type=%ZZ&&&==",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert token_junk.status in (400, 401)
    assert (await client.get("/personnel/v1/employee-ids")).status == 200
