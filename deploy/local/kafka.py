"""The local Kafka: Apache Kafka 4.x, one KRaft node, run from its Maven Central artifacts.

No distribution tarball and no Docker: ``install`` resolves the broker's runtime jars with
Maven over ``deploy/local/kafka/pom.xml`` (which pins the version) into
``<cache>/kafka/<version>/libs`` once; ``start`` renders ``server.properties`` and the log
configuration into ``<state>/kafka/``, formats the storage once (a single-node dynamic
quorum, cluster id kept in the state directory), runs ``java -cp 'libs/*' kafka.Kafka`` with
a modest heap, waits for a metadata request to succeed and creates kotaflow's topics.
The controller listens on the broker's port + 1 (9093 for the default 9092).
"""

from __future__ import annotations

import base64
import re
import shutil
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from deploy.local.installers import apt_install, run_logged
from deploy.local.kafka_topics import ClusterView, describe_cluster, ensure_topics, planned_topics
from deploy.local.service import (
    Paths,
    Report,
    ServiceError,
    ServiceStatus,
    note_config_drift,
    port_open,
    read_pid,
    render_template,
    require_free_port,
    spawn,
    stop_pid,
    wait_until,
)
from kotaflow.settings import KafkaSettings, Settings

FILES = Path(__file__).with_name("kafka")
POM = FILES / "pom.xml"
SERVER_TEMPLATE = FILES / "server.properties"
LOG4J_CONFIG = FILES / "log4j2.properties"
BROKER_JAR = re.compile(r"kafka_2\.13-(?P<version>[\w.-]+)\.jar")
MAVEN_DOWNLOADED = re.compile(r"Downloaded from [^:]+: \S*/(?P<file>[^/\s]+) ")

HEAP = ("-Xms256m", "-Xmx768m")
JVM_OPTIONS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
MAVEN_REPORT_EVERY = 25
"""Report Maven's progress every this many downloaded files (a cold resolve fetches ~350)."""


class Kafka:
    """One Kafka node on the first address of ``settings.kafka.bootstrap_servers``."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self._kafka = settings.kafka
        self._paths = Paths.for_service(settings, self.name)
        self._host, self._port = broker_address(settings.kafka)
        self._version = pinned_version()

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def libs(self) -> Path:
        return self._paths.cache / self._version / "libs"

    @property
    def server_properties(self) -> Path:
        return self._paths.state / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self._paths.state / "data"

    def install(self, report: Report) -> None:
        needed = {"java": "openjdk-17-jre-headless"}
        if not self._installed():
            needed["mvn"] = "maven"
        missing = [package for command, package in needed.items() if not shutil.which(command)]
        if missing:
            apt_install(missing, report, self._paths.cache / "apt.log")
        if not self._installed():
            self._resolve_jars(report)

    def start(self, report: Report) -> None:
        running = self._pid()
        if running is not None:
            report(f"kafka: already running (pid {running}) on {self.address}")
            note_config_drift(self.name, self.server_properties, self._config_text(), report)
        else:
            self._start_broker(report)
        ensure_topics(self._kafka, planned_topics(self._kafka), report)

    def stop(self, report: Report) -> None:
        if stop_pid(self._paths, STOP_TIMEOUT_S, expect=str(self.server_properties)):
            report("kafka: stopped")

    def status(self) -> ServiceStatus:
        pid = self._pid()
        view = self._describe()
        healthy = view is not None and view.brokers > 0
        detail = "" if healthy else ("not running" if pid is None else "running but not answering")
        extra = {} if view is None else {"cluster_id": view.cluster_id, "topics": view.partitions}
        return ServiceStatus(
            name=self.name,
            healthy=healthy,
            address=self.address,
            version=self._installed_version(),
            pid=pid,
            log=str(self._paths.log),
            detail=detail,
            extra={"controller": f"{self._host}:{self._port + 1}", **extra},
        )

    def _start_broker(self, report: Report) -> None:
        if not self._installed():
            raise ServiceError("kafka: not installed; run `kotaflow stack up` to install it")
        setting = "KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS"
        require_free_port(self._host, self._port, self.name, setting)
        require_free_port(self._host, self._port + 1, f"{self.name} controller", setting)
        self._write_config()
        self._format_storage_once(report)
        report(f"kafka: starting {self._version} on {self.address} (log {self._paths.log})")
        pid = spawn(
            [*self._java(), "kafka.Kafka", str(self.server_properties)],
            self._paths,
        )
        wait_until(
            self._answers,
            START_TIMEOUT_S,
            f"kafka on {self.address}",
            self._paths,
            pid,
        )
        report(f"kafka: healthy (pid {pid})")

    def _describe(self) -> ClusterView | None:
        """Checks the port first: the client logs an error for every refused connection."""
        return describe_cluster(self._kafka) if port_open(self._host, self._port) else None

    def _answers(self) -> bool:
        return self._describe() is not None

    def _java(self, heap: tuple[str, ...] = HEAP) -> list[str]:
        return [
            "java",
            *heap,
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self._paths.state / LOG4J_CONFIG.name}",
            "-cp",
            f"{self.libs}/*",
        ]

    def _config_text(self) -> str:
        return render_template(
            SERVER_TEMPLATE,
            host=self._host,
            port=self._port,
            controller_port=self._port + 1,
            data_dir=self.data_dir,
        )

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.server_properties.write_text(self._config_text())
        shutil.copyfile(LOG4J_CONFIG, self._paths.state / LOG4J_CONFIG.name)

    def _format_storage_once(self, report: Report) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        report(f"kafka: formatting storage in {self.data_dir}")
        run_logged(
            [
                *self._java(heap=("-Xmx256m",)),
                "kafka.tools.StorageTool",
                "format",
                "--config",
                str(self.server_properties),
                "--cluster-id",
                self._cluster_id(),
                "--standalone",
                "--ignore-formatted",
            ],
            self._paths.log,
            report,
            what="kafka storage format",
        )

    def _cluster_id(self) -> str:
        """Kept in the state directory, so a re-format after a partial failure matches."""
        path = self._paths.state / "cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    def _resolve_jars(self, report: Report) -> None:
        """Maven resolves into ``libs.partial``; renamed to ``libs`` only when complete."""
        work = self.libs.parent
        partial = work / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(POM, work / "pom.xml")
        log = work / "maven.log"
        report(f"kafka: resolving Apache Kafka {self._version} with Maven (log {log})")
        run_logged(
            [
                "mvn",
                "-B",
                "-Dstyle.color=never",
                f"-Dmaven.repo.local={self._paths.cache / 'maven-repository'}",
                "-f",
                str(work / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={partial}",
            ],
            log,
            report,
            what="maven resolve of the Kafka broker",
            progress=MavenProgress(),
        )
        if not any(BROKER_JAR.fullmatch(p.name) for p in partial.glob("*.jar")):
            raise ServiceError(f"kafka: Maven finished without the broker jar. Log: {log}")
        partial.rename(self.libs)
        report(f"kafka: {len(list(self.libs.glob('*.jar')))} jars in {self.libs}")

    def _installed(self) -> bool:
        return self._installed_version() == self._version

    def _installed_version(self) -> str | None:
        for jar in self.libs.glob("kafka_2.13-*.jar"):
            found = BROKER_JAR.fullmatch(jar.name)
            if found:
                return found["version"]
        return None

    def _pid(self) -> int | None:
        return read_pid(self._paths.pidfile, expect=str(self.server_properties))


class MavenProgress:
    """Turns Maven's per-file download lines into an occasional progress line."""

    def __init__(self) -> None:
        self.downloaded = 0

    def __call__(self, line: str) -> str | None:
        """Lines look like ``[INFO] Downloaded from central: <url> (7.5 kB at 60 kB/s)``."""
        found = MAVEN_DOWNLOADED.search(line)
        if found is None:
            return None
        self.downloaded += 1
        if self.downloaded % MAVEN_REPORT_EVERY:
            return None
        return f"maven: {self.downloaded} files fetched (latest {found['file']})"


def pinned_version() -> str:
    """The Kafka version chosen in ``deploy/local/kafka/pom.xml`` (its one source)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(POM).getroot().findtext("m:properties/m:kafka.version", namespaces=ns)
    if not version:
        raise ServiceError(f"kafka: {POM} has no <kafka.version> property")
    return version.strip()


def broker_address(kafka: KafkaSettings) -> tuple[str, int]:
    """The local broker listens on the first bootstrap address."""
    host, _, port = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    return host, int(port)


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, as Kafka makes
    them (never starting with '-', which Kafka's tools would read as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
