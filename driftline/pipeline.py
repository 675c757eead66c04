"""Run the worker's Faust app inside this process, with ClickHouse storage, until a condition holds.

The foundation's end-to-end path (Kafka → Faust agent → ClickHouse) for ``driftline demo`` and the
integration test; the monitoring worker and the bulk sink replace it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import faust
from clickhouse_connect.driver.client import Client

from driftline.schemas.decoding import Decoded
from driftline.schemas.errors import DriftlineError
from driftline.schemas.events import PredictionEvent
from driftline.schemas.tables import PREDICTIONS
from driftline.settings import Settings
from driftline.sinks.rows import prediction_row
from driftline.streams.app import add_prediction_recorder, create_app


class PredictionStore:
    """Inserts the minimal agent's batches into ``predictions`` and counts what it stored."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.stored = 0

    def __call__(self, events: list[Decoded[PredictionEvent]]) -> None:
        rows = [prediction_row(event) for event in events]
        self.client.insert(PREDICTIONS.name, rows, column_names=PREDICTIONS.column_names)
        self.stored += len(rows)


def run_forever(settings: Settings, client: Client, loglevel: str = "info") -> None:
    """Run the Faust app as a worker until SIGINT or SIGTERM (``driftline worker``)."""
    app = create_app(settings)
    add_prediction_recorder(app, settings, PredictionStore(client))
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()


def run_until(
    settings: Settings, client: Client, done: Callable[[PredictionStore], bool], timeout_s: float = 60.0
) -> PredictionStore:
    """Run the Faust app in this process until ``done(store)`` is true; raise if ``timeout_s`` passes."""
    store = PredictionStore(client)
    app = create_app(settings)
    add_prediction_recorder(app, settings, store)

    async def main() -> None:
        await app.start()
        try:
            deadline = time.monotonic() + timeout_s
            while not done(store):
                if time.monotonic() > deadline:
                    raise DriftlineError(
                        f"the pipeline stored {store.stored} predictions in {timeout_s:.0f} s without "
                        "reaching its goal; is the broker at "
                        f"{settings.kafka.bootstrap} reachable and are the topics created?"
                    )
                await asyncio.sleep(0.1)
        finally:
            await app.stop()

    asyncio.run(main())
    return store
