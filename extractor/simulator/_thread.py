"""``run_in_thread``: the simulator for synchronous code (benchmarks, demos, sync tests).

The server runs in a daemon thread with its own event loop (uvloop when
installed). The handle's methods marshal each call into that loop, so they are
safe from any thread and never race with a request being served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from ._config import ServiceAccount, SimulatorConfig
from ._simulator import Simulator

__all__ = ["SimulatorHandle", "new_event_loop", "run_in_thread"]

T = TypeVar("T")
_CALL_TIMEOUT = 600.0  # truth() of a very large tenant can take a while
_START_TIMEOUT = 120.0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class SimulatorHandle:
    """A running simulator seen from another thread."""

    def __init__(self, simulator: Simulator, loop: asyncio.AbstractEventLoop) -> None:
        self._simulator = simulator
        self._loop = loop
        self.base_url: str = simulator.base_url
        self.default_account: ServiceAccount = simulator.default_account
        self.credential_sources: dict[str, str] = dict(simulator.credential_sources)

    def _call(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(function(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=_CALL_TIMEOUT)

    def stats(self) -> dict[str, Any]:
        return self._call(self._simulator.stats)

    def reset_stats(self) -> None:
        self._call(self._simulator.reset_stats)

    def truth(self) -> dict[str, dict[str, Any]]:
        return self._call(self._simulator.truth)

    def truth_employment_details(self) -> dict[str, dict[str, Any]]:
        return self._call(self._simulator.truth_employment_details)

    def churn(
        self, *, hires: int = 0, updates: int = 0, terminations: int = 0, deletions: int = 0
    ) -> list[dict[str, Any]]:
        return self._call(
            self._simulator.churn,
            hires=hires,
            updates=updates,
            terminations=terminations,
            deletions=deletions,
        )

    def changes(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        reported: bool | None = None,
    ) -> list[dict[str, Any]]:
        return self._call(self._simulator.changes, since=since, until=until, reported=reported)

    def blind_changes(
        self, *, since: datetime | str | None = None, until: datetime | str | None = None
    ) -> list[dict[str, Any]]:
        return self._call(self._simulator.blind_changes, since=since, until=until)

    def set_knobs(self, **changes: Any) -> None:
        self._call(self._simulator.set_knobs, **changes)
        self.default_account = self._call(lambda: self._simulator.default_account)

    def knobs(self) -> dict[str, Any]:
        return self._call(self._simulator.knobs)


@contextmanager
def run_in_thread(
    config: SimulatorConfig, *, env: Mapping[str, str] | None = None
) -> Iterator[SimulatorHandle]:
    """Run a simulator in a daemon thread for the duration of the ``with`` block."""
    ready: concurrent.futures.Future[SimulatorHandle] = concurrent.futures.Future()
    loop_box: list[asyncio.AbstractEventLoop] = []
    stop_box: list[asyncio.Event] = []

    async def main() -> None:
        stop = asyncio.Event()
        try:
            simulator = Simulator(config, env=env)
            await simulator.start()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        loop_box.append(asyncio.get_running_loop())
        stop_box.append(stop)
        try:
            ready.set_result(SimulatorHandle(simulator, loop_box[0]))
            await stop.wait()
        finally:
            await simulator.stop()

    def serve() -> None:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(main())

    thread = threading.Thread(target=serve, name="ukg-simulator", daemon=True)
    thread.start()
    handle = ready.result(timeout=_START_TIMEOUT)
    try:
        yield handle
    finally:
        loop, stop = loop_box[0], stop_box[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
