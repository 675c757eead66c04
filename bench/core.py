"""(c) The worker's two stages without Faust: :class:`WorkerStages` built by ``driftline.pipeline`` (reference
profiles from their topic, window results and triggers published to Kafka with the idempotent producer,
emissions and checkpoints paced as the worker paces them: an emission every ``monitor.checkpoint_s`` and when a
window closes, a checkpoint when one is due), fed by a bare confluent-kafka consumer; its two stages talk in
process (:class:`LocalCheckpoints`: deltas encoded and decoded, not sent through ``window-parts``).

Run by the harness as ``python -m bench.core SPEC``; SPEC (JSON) gives ``settings`` (load_settings overrides),
``ends``, ``group`` and ``outputs`` (the topic prefix its results and triggers go to, so they do not mix with
the worker's) and ``labels_first`` (read every feedback partition to its end before any prediction, as a
consumer that has fallen far behind on predictions does). Offsets are committed after each checkpoint, as the
worker acknowledges them. After the last message it checkpoints once more, within the time measured (for its
CPU time, as (d)): the windows the stream closed are published.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.bare_consumer import BATCH, partition_ends
from bench.measure import Meter
from driftline.pipeline import build_stages, tune_collector
from driftline.schemas.decoding import kafka_time
from driftline.schemas.topics import FEEDBACK
from driftline.settings import load_settings
from driftline.streams.worker.local import LocalCheckpoints


def run(spec: dict[str, Any]) -> None:
    """Feed the whole stream to the stages and report the measurement."""
    settings = load_settings(**spec["settings"])
    tune_collector()  # as the worker does
    ends = partition_ends(spec["ends"])
    stages, _profiles = build_stages(settings, spec["outputs"])
    checkpoints = LocalCheckpoints(stages, settings.data_path / "core" / f"{settings.worker.app_id}.checkpoint")
    consumer = Consumer({**settings.kafka.client_config(), "group.id": spec["group"], "enable.auto.commit": False})
    feedback = settings.topic(FEEDBACK.name)
    phases = [{tp for tp in ends if tp[0] == feedback}, {tp for tp in ends if tp[0] != feedback}]
    if not spec.get("labels_first"):
        phases = [set(ends)]
    meter, unfinished, messages = Meter(), set(), 0
    while phases or unfinished:
        if not unfinished:
            unfinished = phases.pop(0)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for topic, p in sorted(unfinished)])
        batch = consumer.consume(BATCH, timeout=1.0)
        if batch and not meter.running:
            meter.start()
        for message in batch:
            if message.error() is not None:  # left in the run's log: a run that misses events is kept with it
                print(f"consumer error {message.topic()}[{message.partition()}]: {message.error()}", file=sys.stderr)
                continue
            topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
            stages.handle(topic, partition, offset, message.value(), kafka_time(message.timestamp()[1]))
            messages += 1
            if offset + 1 >= ends[(topic, partition)]:
                unfinished.discard((topic, partition))
            if stages.checkpoint_due:
                checkpoints.run(stages)
                covered = [TopicPartition(t, p, o + 1) for (t, p), o in stages.offsets.items()]
                consumer.commit(offsets=covered, asynchronous=True)
            elif stages.emit_due or stages.close_due:  # as the worker paces its emissions
                checkpoints.emit(stages)
            # per message, not per batch: a batch of envelopes is up to 500,000 events, over a minute of work
            # with 1,000 models, which the harness would take for a stall
            meter.tick(stages.counts["predictions"] + stages.counts["feedback"])
    # what the stream closed is published before the clock stops; as for the worker, this last checkpoint
    # counts for its CPU time (its fsync of a large state waits on the disk)
    read, cpu = time.perf_counter(), time.process_time()
    checkpoints.run(stages)
    checkpoint_cpu_s = time.process_time() - cpu
    counts = stages.counts
    meter.finish(
        counts["predictions"] + counts["feedback"],
        messages,
        seconds=read - meter.started_at + checkpoint_cpu_s,
        final_checkpoint_s=round(time.perf_counter() - read, 2),
        final_checkpoint_cpu_s=round(checkpoint_cpu_s, 2),
        windows_emitted=counts["windows_emitted"],
        triggers=counts["triggers"],
        alarms=counts["alarms"],
        replayed=counts["replayed"],
        dead_letters=sum(n for name, n in counts.items() if name.startswith("dead_letter:")),
        pending=sum(join.waiting_predictions for join in stages.joins.values()),
        open_windows=sum(len(merger.engine.windows) for merger in stages.mergers.values()),
    )
    consumer.close()


def main() -> None:
    run(json.loads(sys.argv[1]))


if __name__ == "__main__":
    main()
