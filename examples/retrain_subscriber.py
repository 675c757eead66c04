"""An example retraining service: subscribe to driftline's retrain-triggers topic and act once per decision.

Run it beside driftline (it needs only confluent-kafka)::

    python examples/retrain_subscriber.py --bootstrap 127.0.0.1:9092 \
        --run 'python train.py --model "$DRIFTLINE_MODEL_ID" --version "$DRIFTLINE_MODEL_VERSION"'

What it shows a subscriber in any language must do:

- read in its own consumer group, from the earliest offset the first time;
- deduplicate by ``trigger_id``: delivery is at least once (a worker restart or a replay may publish the
  same decision again, always with the same id), so keep the ids already handled (here a file with one id
  per line, appended before the offset is committed);
- commit the offset only after the trigger was handled, so a crash of the subscriber re-delivers it.

Each trigger handled is printed as one JSON line on stdout; with ``--run`` the command also runs with the
trigger JSON on its stdin and ``DRIFTLINE_TRIGGER_ID``, ``DRIFTLINE_MODEL_ID``, ``DRIFTLINE_MODEL_VERSION`` and
``DRIFTLINE_SEVERITY`` in its environment. SIGINT or SIGTERM stops it after the message in hand.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers.")
    parser.add_argument("--topic", default="driftline.retrain-triggers", help="The triggers topic (with prefix).")
    parser.add_argument("--group", default="retrain-subscriber", help="This service's own consumer group.")
    parser.add_argument("--state", type=Path, default=Path("retrain-subscriber.seen"), help="Ids handled so far.")
    parser.add_argument("--run", help="Shell command to run per new trigger (the trigger JSON on its stdin).")
    return parser.parse_args()


def handle(trigger: dict[str, Any], command: str | None) -> None:
    """Act on one new decision: print it, and run the command if one was given."""
    print(json.dumps(trigger, sort_keys=True), flush=True)
    if command:
        env = {
            **os.environ,
            "DRIFTLINE_TRIGGER_ID": trigger["trigger_id"],
            "DRIFTLINE_MODEL_ID": trigger["model_id"],
            "DRIFTLINE_MODEL_VERSION": trigger["model_version"],
            "DRIFTLINE_SEVERITY": trigger["severity"],
        }
        subprocess.run(command, shell=True, input=json.dumps(trigger).encode(), env=env, check=True)


def main() -> int:
    args = parse_args()
    seen = set(args.state.read_text().split()) if args.state.exists() else set()
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    print(f"subscribed to {args.topic} at {args.bootstrap} as {args.group}", file=sys.stderr, flush=True)
    try:
        with args.state.open("a") as ids:
            while not stopping:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error() is not None:
                    if message.error().fatal():
                        raise KafkaException(message.error())
                    continue
                trigger = json.loads(message.value())
                if trigger["trigger_id"] not in seen:
                    handle(trigger, args.run)
                    seen.add(trigger["trigger_id"])
                    ids.write(trigger["trigger_id"] + "\n")
                    ids.flush()
                consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
