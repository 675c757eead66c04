"""A local Apache Kafka broker (KRaft, one combined broker+controller node) for development and tests.

The broker's jars are resolved once by Maven from Maven Central into ``broker.cache_dir/<version>/libs``
(``local_broker_pom.xml`` beside this module); its storage, config, log and pid file live in
``<data_dir>/kafka``. Nothing here needs Docker: Java 17 and Maven are enough.

By default the broker's client listener is PLAINTEXT. Given a
:class:`~driftline.devtools.secured_broker.SecuredListener` it is SASL_SSL instead (TLS with the listener's
certificates, SASL/PLAIN logins for its users), on the same port.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path

from driftline.devtools.secured_broker import BROKER_USER, SecuredListener
from driftline.kafka.topics import broker_answers
from driftline.schemas.errors import BrokerError, ConfigError
from driftline.settings import BrokerSettings, KafkaSettings, Settings

LOG_TAIL_LINES = 40


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, never one this process was given before (the
    system may offer a port again once its probe is closed, so two asked for together would clash)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass(frozen=True)
class BrokerStatus:
    """What ``driftline kafka status`` reports."""

    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path

    def describe(self) -> str:
        """One line for a person."""
        if self.running:
            return f"running (pid {self.pid}) at {self.bootstrap}, data in {self.data_dir}"
        return f"not running (would listen at {self.bootstrap}, data in {self.data_dir})"


class LocalKafka:
    """Start, stop and inspect the local broker described by ``settings``.

    ``log`` receives progress lines meant for a person (the CLI prints them); with ``secured`` the client
    listener is SASL_SSL (see the module's docstring). Stopped and started again, the broker keeps its ports
    and its data.
    """

    def __init__(
        self,
        settings: Settings,
        log: Callable[[str], None] = lambda _line: None,
        secured: SecuredListener | None = None,
    ) -> None:
        self.broker: BrokerSettings = settings.broker
        self.home = settings.data_path / "kafka"
        self.log = log
        self.secured = secured

    @property
    def bootstrap(self) -> str:
        """The address clients use: ``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.broker.port}"

    @property
    def log_file(self) -> Path:
        """The broker's own log (stdout and stderr of the Java process)."""
        return self.home / "broker.log"

    @property
    def _pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def _libs(self) -> Path:
        return self.broker.cache_dir.expanduser() / self.broker.kafka_version / "libs"

    # -- public commands -------------------------------------------------------------------------------

    def status(self) -> BrokerStatus:
        """Whether our broker process is alive, and where."""
        pid = self._live_pid()
        return BrokerStatus(pid is not None, pid, self.bootstrap, self.home)

    def start(self) -> BrokerStatus:
        """Start the broker unless it runs; return once it answers metadata requests.

        Raises :class:`ConfigError` when Java or Maven is missing and :class:`BrokerError` when a port is
        taken or the broker dies at start (with the tail of its log).
        """
        current = self.status()
        if current.running:
            self.log(f"Kafka is already running (pid {current.pid}) at {self.bootstrap}")
            return current
        java = self._check_java()
        self._check_ports_free()
        libs = self.resolve_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self._format_storage_once(java, libs, config)
        self.log(f"Starting Apache Kafka {self.broker.kafka_version} (KRaft) at {self.bootstrap} ...")
        started = time.monotonic()
        with self.log_file.open("ab") as log_out:
            process = subprocess.Popen(
                [
                    java,
                    f"-Xmx{self.broker.heap}",
                    f"-Xms{self.broker.heap}",
                    f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                    f"-Dkafka.logs.dir={self.home / 'logs'}",
                    "-cp",
                    f"{libs}/*",
                    "kafka.Kafka",
                    str(config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the CLI; `driftline kafka stop` ends it
            )
        self._pid_file.write_text(str(process.pid))
        self._wait_until_ready(process)
        self.log(f"Kafka is ready at {self.bootstrap} ({time.monotonic() - started:.1f} s)")
        return self.status()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout_s``). False if it was not running."""
        pid = self._live_pid()
        if pid is None:
            self._pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            self.log(f"Kafka did not stop within {timeout_s:.0f} s; killing pid {pid}")
            os.kill(pid, signal.SIGKILL)
        self._pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the broker's log, or a note that there is none yet."""
        if not self.log_file.exists():
            return f"(no broker log yet at {self.log_file})"
        with self.log_file.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 200 * lines))
            text = handle.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def resolve_jars(self) -> Path:
        """Resolve the broker's runtime jars with Maven into the cache, once per Kafka version."""
        complete = self._libs.parent / ".complete"
        if complete.exists():
            return self._libs
        maven = shutil.which(self.broker.maven)
        if maven is None:
            raise ConfigError(
                f"Maven not found: DRIFTLINE_BROKER_MAVEN={self.broker.maven!r} is not an executable on PATH; "
                "install Maven 3 (apt-get install maven) or point the setting at it"
            )
        self.log(
            f"Resolving Apache Kafka {self.broker.kafka_version} jars from Maven Central into "
            f"{self._libs} (first run only) ..."
        )
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=_ensure_dir(self._libs.parent)))
        with as_file(files("driftline.devtools") / "local_broker_pom.xml") as pom:
            result = subprocess.run(
                [
                    maven,
                    "--batch-mode",
                    "--quiet",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-Dkafka.version={self.broker.kafka_version}",
                    f"-DoutputDirectory={staging}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            output = "\n".join((result.stdout + result.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise BrokerError(
                f"Maven could not resolve org.apache.kafka:kafka_2.13:{self.broker.kafka_version}:\n{output}"
            )
        shutil.rmtree(self._libs, ignore_errors=True)
        staging.rename(self._libs)
        complete.touch()
        self.log(f"Resolved {len(list(self._libs.glob('*.jar')))} jars in {time.monotonic() - started:.0f} s")
        return self._libs

    # -- internals -------------------------------------------------------------------------------------

    def _live_pid(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) and _is_kafka(pid) else None

    def _check_java(self) -> str:
        java = shutil.which(self.broker.java)
        problem = None if java else "is not an executable (a path, or a name on PATH)"
        if java:
            try:
                probe = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
                problem = None if probe.returncode == 0 else f"failed: {probe.stderr.strip()[:200]}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                problem = f"failed: {exc}"
        if problem or java is None:
            raise ConfigError(
                f"Java not found: DRIFTLINE_BROKER_JAVA={self.broker.java!r} {problem}; "
                "install Java 17+ (apt-get install openjdk-17-jre-headless) or point the setting at it"
            )
        return java

    def _check_ports_free(self) -> None:
        for name, port in (("port", self.broker.port), ("controller_port", self.broker.controller_port)):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    raise BrokerError(
                        f"port {port} on 127.0.0.1 is taken by another process; stop it, or set "
                        f"DRIFTLINE_BROKER_{name.upper()} to a free port"
                    ) from None

    def _write_config(self) -> Path:
        """Write server.properties and the log4j2 config for one node; rewritten at every start."""
        port, controller = self.broker.port, self.broker.controller_port
        listener = "PLAINTEXT" if self.secured is None else "SASL_SSL"
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "listeners": f"{listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"{listener}://127.0.0.1:{port}",
            "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            **(self.secured.broker_properties() if self.secured is not None else {}),
            "log.dirs": str(self.home / "data"),
            # one node: nothing can be replicated, and a consumer group should not wait for peers
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "168",
            "message.max.bytes": "8388608",
        }
        config = self.home / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        (self.home / "log4j2.properties").write_text(
            "status = error\n"
            "appender.out.type = Console\nappender.out.name = out\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = out\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = INFO\n"
            "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
        )
        return config

    def _format_storage_once(self, java: str, libs: Path, config: Path) -> None:
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id = "-"
        while cluster_id.startswith("-"):  # the tool would read it as an option (Kafka's own ids avoid it too)
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        result = subprocess.run(
            [
                java,
                "-cp",
                f"{libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage in {self.home / 'data'} failed:\n{result.stderr}")

    @property
    def _own_client(self) -> KafkaSettings:
        """How this launcher asks the broker whether it answers: as the broker's own user when secured."""
        security = self.secured.kafka_settings(BROKER_USER) if self.secured is not None else {}
        return KafkaSettings.model_validate({"bootstrap": self.bootstrap, **security})

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.broker.start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"Kafka exited with code {process.returncode} during start; last lines of "
                    f"{self.log_file}:\n{self.log_tail()}"
                )
            if broker_answers(self._own_client, timeout_s=1.0):
                return
            time.sleep(0.3)
        raise BrokerError(
            f"Kafka did not answer at {self.bootstrap} within {self.broker.start_timeout_s:.0f} s; "
            f"last lines of {self.log_file}:\n{self.log_tail()}"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True


def _is_kafka(pid: int) -> bool:
    """Guard against a recycled pid: the process must be a Kafka broker."""
    try:
        return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
