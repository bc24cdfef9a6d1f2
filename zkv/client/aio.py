"""``AsyncClient``: the zkv client for asyncio code, on the same sockets and batching.

Every call hands its operation to the underlying ``Client`` (whose IO thread
owns the sockets and batches ops per node) and awaits the resulting future,
so thousands of coroutines can keep requests in flight at once:

    async with await AsyncClient.connect(["127.0.0.1:8080"]) as c:
        await c.set("user:123", "John")
        values = await asyncio.gather(*(c.get(f"k{i}") for i in range(1000)))
"""

from __future__ import annotations

import asyncio
from typing import Iterable, Mapping, Sequence

from zkv.client.client import Client


class AsyncClient:
    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    async def connect(cls, nodes: Sequence[str] | str, **options) -> AsyncClient:
        """Connect without blocking the event loop (options as for ``Client``)."""
        loop = asyncio.get_running_loop()
        client = await loop.run_in_executor(None, lambda: Client(nodes, **options))
        return cls(client)

    async def set(self, key: str | bytes, value: str | bytes, *, w: int | None = None,
                  timeout: float | None = None) -> None:
        await asyncio.wrap_future(self.client.set_async(key, value, w=w, timeout=timeout))

    async def get(self, key: str | bytes, *, r: int | None = None, timeout: float | None = None):
        return await asyncio.wrap_future(self.client.get_async(key, r=r, timeout=timeout))

    async def delete(self, key: str | bytes, *, w: int | None = None, timeout: float | None = None) -> None:
        await asyncio.wrap_future(self.client.delete_async(key, w=w, timeout=timeout))

    async def mset(self, items: Mapping | Iterable[tuple], *, w: int | None = None,
                   timeout: float | None = None) -> None:
        await asyncio.wrap_future(self.client.mset_async(items, w=w, timeout=timeout))

    async def mget(self, keys: Iterable[str | bytes], *, r: int | None = None, timeout: float | None = None) -> list:
        return await asyncio.wrap_future(self.client.mget_async(keys, r=r, timeout=timeout))

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.client.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()
