"""A real Apache Kafka broker (KRaft, single node) on loopback, launched from Maven jars.

Used by the demo, the tests and `blueclerk-sync kafka` when no KAFKA_BOOTSTRAP_SERVERS
is given. The jars are resolved from Maven Central with Maven into a cache folder
once; storage is formatted fresh for every broker. Stopping the broker terminates
the JVM (and kills it if it does not exit), so no orphan JVM outlives its owner.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = ["KAFKA_VERSION", "KafkaBroker", "resolve_kafka_jars"]

KAFKA_VERSION = "4.3.1"
_POM = Path(__file__).with_name("kafka") / "pom.xml"
_LOG4J2 = """\
Configuration:
  status: warn
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""


def default_cache_dir() -> Path:
    base = os.environ.get("BLUECLERK_CACHE_DIR")
    if base:
        return Path(base)
    return Path(__file__).resolve().parent.parent / ".cache"


def resolve_kafka_jars(cache_dir: Path | None = None) -> Path:
    """Return a folder holding the broker's jars, resolving them with Maven if needed."""
    libs = (cache_dir or default_cache_dir()) / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is required to fetch Apache Kafka; install maven")
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(
        [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(_POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
        check=True,
    )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.touch()
    return libs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class KafkaBroker:
    """One combined broker/controller; use as a context manager or start()/stop()."""

    heap: str = "768m"
    cache_dir: Path | None = None
    port: int = 0
    controller_port: int = 0
    workdir: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java_cmd(self, libs: Path, main: str, *args: str) -> list[str]:
        java = shutil.which("java") or "java"
        return [
            java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._dir / 'log4j2.yaml'}",
            "-cp", f"{libs}/*", main, *args,
        ]

    @property
    def _dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir

    def _write_config(self) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self._dir / "data"),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # KIP-848 groups: the session timeout and heartbeat are the broker's. The
            # defaults (45 s, 5 s) would leave a killed worker's partitions idle for 45 s;
            # these match what the classic protocol's clients ask for (10 s, 1 s).
            "group.consumer.min.session.timeout.ms": "6000",
            "group.consumer.session.timeout.ms": "10000",
            "group.consumer.min.heartbeat.interval.ms": "1000",
            "group.consumer.heartbeat.interval.ms": "1000",
            "auto.create.topics.enable": "true",
            "log.flush.interval.messages": "9223372036854775807",
        }
        path = self._dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self._dir / "log4j2.yaml").write_text(_LOG4J2)
        return path

    def start(self, timeout: float = 120.0) -> KafkaBroker:
        libs = resolve_kafka_jars(self.cache_dir)
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kafka-")
            self.workdir = Path(self._tmp.name)
        self.port = self.port or _free_port()
        self.controller_port = self.controller_port or _free_port()
        config = self._write_config()
        if not (self._dir / "data" / "meta.properties").exists():
            subprocess.run(
                self._java_cmd(libs, "kafka.tools.StorageTool", "format", "--standalone",
                               "-t", _cluster_id(), "-c", str(config)),
                check=True, stdout=subprocess.DEVNULL,
            )
        self._launch(libs, config, timeout)
        return self

    def _launch(self, libs: Path, config: Path, timeout: float) -> None:
        log = (self._dir / "broker.log").open("ab")
        self._proc = subprocess.Popen(
            self._java_cmd(libs, "kafka.Kafka", str(config)),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._proc.poll() is not None:
                raise RuntimeError(f"Kafka exited early; see {self._dir / 'broker.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("Kafka broker did not become ready")
            time.sleep(0.25)

    def restart(self, down_s: float = 0.0, timeout: float = 120.0) -> None:
        """Stop the JVM (SIGTERM, a clean shutdown) and start it again on the same ports
        and the same storage: clients see the broker go away and come back with every
        topic, record and committed offset it had."""
        self._terminate()
        time.sleep(down_s)
        self._launch(resolve_kafka_jars(self.cache_dir), self._dir / "server.properties",
                     timeout)

    def _ready(self) -> bool:
        if not _port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers)

    def stop(self) -> None:
        self._terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.workdir = None

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _die_with_parent() -> None:
    """Linux: the JVM gets SIGTERM when the thread that started it dies, even by SIGKILL
    (no orphans); start brokers from a long-lived thread."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _cluster_id() -> str:
    """16 random bytes in URL-safe base64 without padding, never starting with '-': like
    Kafka's own Uuid.randomUuid, since the storage tool would read '-…' as an option."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id
