"""An example retraining service: subscribe to driftline's retrain-triggers topic and act once per decision.

Run it beside driftline (it needs only confluent-kafka)::

    python examples/retrain_subscriber.py --bootstrap 127.0.0.1:9092 \
        --run 'python train.py --model "$DRIFTLINE_MODEL_ID" --version "$DRIFTLINE_MODEL_VERSION"'

It reads the connection as driftline does, from the same environment variables: ``DRIFTLINE_KAFKA_BOOTSTRAP``,
``DRIFTLINE_KAFKA_TOPIC_PREFIX`` (the triggers topic is ``<prefix>retrain-triggers``),
``DRIFTLINE_KAFKA_SECURITY_PROTOCOL``, ``DRIFTLINE_KAFKA_SASL_MECHANISM``, ``DRIFTLINE_KAFKA_SASL_USERNAME``,
``DRIFTLINE_KAFKA_SASL_PASSWORD``, ``DRIFTLINE_KAFKA_SSL_CA_LOCATION`` and ``DRIFTLINE_KAFKA_SSL_CHECK_HOSTNAME``;
the options override the first two.

What it shows a subscriber in any language must do:

- read in its own consumer group, from the earliest offset the first time;
- deduplicate by ``trigger_id``: delivery is at least once (a worker restart or a replay may publish the
  same decision again, always with the same id), so keep the ids already handled (here a file with one id
  per line, appended before the offset is committed);
- commit the offset only after the trigger was handled, so a crash of the subscriber re-delivers it.

Each trigger handled is printed as one JSON line on stdout; with ``--run`` the command also runs with the
trigger JSON on its stdin and ``DRIFTLINE_TRIGGER_ID``, ``DRIFTLINE_MODEL_ID``, ``DRIFTLINE_MODEL_VERSION`` and
``DRIFTLINE_SEVERITY`` in its environment. A command that fails (exits non-zero) is run again, up to
``--attempts`` runs in all, waiting ``--retry-wait-s`` seconds and then twice as long each time; if the last run
fails too, the trigger is reported on stderr as a JSON line with ``"status": "failed"`` and skipped: recorded as
handled and committed, so that a restart does not run it again and the triggers after it still run. (A retraining
that must never be skipped belongs in a durable queue that the command writes to.) SIGINT or SIGTERM stops it
after the message in hand.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    env = os.environ.get
    parser.add_argument(
        "--bootstrap", default=env("DRIFTLINE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"), help="Kafka bootstrap servers."
    )
    parser.add_argument(
        "--prefix", default=env("DRIFTLINE_KAFKA_TOPIC_PREFIX", "driftline."), help="driftline's topic prefix."
    )
    parser.add_argument("--topic", help="The triggers topic, if not <prefix>retrain-triggers.")
    parser.add_argument("--group", default="retrain-subscriber", help="This service's own consumer group.")
    parser.add_argument("--state", type=Path, default=Path("retrain-subscriber.seen"), help="Ids handled so far.")
    parser.add_argument("--run", help="Shell command to run per new trigger (the trigger JSON on its stdin).")
    parser.add_argument("--attempts", type=int, default=3, help="Runs of a failing command before it is skipped.")
    parser.add_argument("--retry-wait-s", type=float, default=5.0, help="Wait before the first run again.")
    return parser.parse_args()


def kafka_config(bootstrap: str) -> dict[str, Any]:
    """The connection, from driftline's environment variables (SASL and TLS as driftline's own clients use them)."""
    env = os.environ.get
    protocol = env("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "security.protocol": protocol}
    if protocol.startswith("SASL_"):
        config["sasl.mechanism"] = env("DRIFTLINE_KAFKA_SASL_MECHANISM", "PLAIN")  # (driftline's default)
        config["sasl.username"] = env("DRIFTLINE_KAFKA_SASL_USERNAME", "")
        config["sasl.password"] = env("DRIFTLINE_KAFKA_SASL_PASSWORD", "")
    if protocol in ("SSL", "SASL_SSL"):
        if env("DRIFTLINE_KAFKA_SSL_CA_LOCATION"):
            config["ssl.ca.location"] = env("DRIFTLINE_KAFKA_SSL_CA_LOCATION")
        check = env("DRIFTLINE_KAFKA_SSL_CHECK_HOSTNAME", "true").lower() not in ("0", "false", "no")
        config["ssl.endpoint.identification.algorithm"] = "https" if check else "none"
    return config


def handle(trigger: dict[str, Any], command: str | None, attempts: int, wait_s: float) -> None:
    """Act on one new decision: print it, and run the command if one was given (again after a failure, up to
    ``attempts`` runs; then report it failed on stderr and go on)."""
    print(json.dumps(trigger, sort_keys=True), flush=True)
    if not command:
        return
    env = {
        **os.environ,
        "DRIFTLINE_TRIGGER_ID": trigger["trigger_id"],
        "DRIFTLINE_MODEL_ID": trigger["model_id"],
        "DRIFTLINE_MODEL_VERSION": trigger["model_version"],
        "DRIFTLINE_SEVERITY": trigger["severity"],
    }
    for attempt in range(1, attempts + 1):
        code = subprocess.run(command, shell=True, input=json.dumps(trigger).encode(), env=env, check=False).returncode
        if code == 0:
            return
        if attempt < attempts:
            time.sleep(wait_s * 2 ** (attempt - 1))
    failure = {"trigger_id": trigger["trigger_id"], "status": "failed", "exit_code": code, "attempts": attempts}
    print(json.dumps(failure), file=sys.stderr, flush=True)


def main() -> int:
    args = parse_args()
    seen = set(args.state.read_text().split()) if args.state.exists() else set()
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    topic = args.topic or f"{args.prefix}retrain-triggers"
    consumer = Consumer(
        {
            **kafka_config(args.bootstrap),
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    print(f"subscribed to {topic} at {args.bootstrap} as {args.group}", file=sys.stderr, flush=True)
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
                    handle(trigger, args.run, max(args.attempts, 1), args.retry_wait_s)
                    seen.add(trigger["trigger_id"])
                    ids.write(trigger["trigger_id"] + "\n")
                    ids.flush()
                consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
