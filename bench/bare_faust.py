"""(b) A bare Faust agent: the worker's Faust app (same configuration, aiokafka driver, raw value
serializer), one agent that reads every message of the stream and decodes it with orjson, and nothing else.

Run by the harness as ``python -m bench.bare_faust SPEC``; SPEC (JSON) gives ``settings`` (load_settings
overrides: broker, topic prefix, app id = consumer group, web port) and ``ends``. It stops once every
partition is read to its end offset.
"""

from __future__ import annotations

import asyncio
import json
import sys

from faust.types import StreamT

from bench.bare_consumer import decode, partition_ends
from bench.measure import Meter
from driftline.schemas.topics import FEEDBACK, PREDICTIONS
from driftline.settings import load_settings
from driftline.streams.faust.app import create_app


def main() -> None:
    spec = json.loads(sys.argv[1])
    settings = load_settings(**spec["settings"])
    ends = partition_ends(spec["ends"])
    app = create_app(settings)
    topic = app.topic(
        settings.topic(PREDICTIONS.name), settings.topic(FEEDBACK.name), value_serializer="raw", key_serializer="raw"
    )
    meter, unfinished = Meter(), set(ends)
    counts = {"events": 0, "messages": 0}

    @app.agent(topic, name="bare", concurrency=1)
    async def bare(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            if not meter.running:
                meter.start()
            counts["messages"] += 1
            message = event.message
            if message.offset + 1 >= ends[(message.topic, message.partition)]:
                unfinished.discard((message.topic, message.partition))
            counts["events"] += decode(event.value)
            meter.tick(counts["events"])
            if not unfinished:
                meter.finish(counts["events"], counts["messages"])
                return

    async def run() -> None:
        await app.start()
        try:
            while unfinished:
                await asyncio.sleep(0.05)
        finally:
            await app.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
