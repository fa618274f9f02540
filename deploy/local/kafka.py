"""The local Kafka: Apache Kafka 4.x, one KRaft node (or a cluster of three, see
``deploy/local/kafka_nodes.py``), run from its Maven Central artifacts.

No distribution tarball and no Docker: ``install`` resolves the broker's runtime jars with
Maven over ``deploy/local/kafka/pom.xml`` (which pins the version) into
``<cache>/kafka/<version>/libs`` once; ``start`` renders ``server.properties`` and the log
configuration into ``<state>/kafka/``, formats the storage once (a single-node dynamic
quorum, cluster id kept in the state directory), runs ``java -cp 'libs/*' kafka.Kafka`` with
a modest heap, waits for a metadata request to succeed and creates kotaflow's topics.
The controller listens on the broker's port + 1 (9093 for the default 9092).

A cluster (``stack.kafka_brokers: 3``, ``kotaflow stack up --kafka-brokers 3``) runs three
combined controller+broker nodes, each with its own files and ports, a smaller heap each
(this is for proving failover on one machine), Kafka's internal topics with 3 replicas and
min ISR 2; ``start`` starts whichever nodes are not running (a lost node comes back with
another ``stack up``) and waits until every node is a broker of the cluster.

Security: besides the PLAINTEXT listener on loopback (local tools and tests), a SASL_SSL
listener on port + 2 (9094) takes SCRAM-SHA-512 logins over TLS, as production does. Its
certificate comes from the stack's CA (``deploy/local/tls.py``); the SCRAM user
:data:`~kotaflow.kafka.LOCAL_SCRAM_USER` gets a random password in
``<state>/kafka/sasl.password`` (0600), which kotaflow's settings find by themselves. The
user is added through the Admin API (Kafka's ``ConfigCommand``, the password in a 0600
file, never on a command line) whenever a SCRAM login fails: on a fresh broker, and as
well on one whose storage was formatted before this listener existed. Settings that point
the clients at the SASL listener (``security_protocol: SASL_*``) name its port; the local
plain port is then port - 2.
"""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import re
import secrets
import shutil
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from deploy.local.installers import apt_install, run_logged
from deploy.local.kafka_nodes import (
    SASL_PORT_OFFSET,
    KafkaNode,
    internal_replication,
    kafka_nodes,
    quorum_line,
)
from deploy.local.kafka_topics import (
    ClusterView,
    create_kotaflow_topics,
    describe_cluster,
    describe_with,
    warm_group_coordinator,
)
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
from deploy.local.tls import TlsFiles, ensure_tls
from ingest.sizes import SizeLimits
from kotaflow.kafka import LOCAL_SCRAM_USER, client_options, local_sasl_password_file
from kotaflow.secretfiles import write_private
from kotaflow.settings import KafkaSettings, Settings

FILES = Path(__file__).with_name("kafka")
POM = FILES / "pom.xml"
SERVER_TEMPLATE = FILES / "server.properties"
LOG4J_CONFIG = FILES / "log4j2.properties"
BROKER_JAR = re.compile(r"kafka_2\.13-(?P<version>[\w.-]+)\.jar")
MAVEN_DOWNLOADED = re.compile(r"Downloaded from [^:]+: \S*/(?P<file>[^/\s]+) ")

HEAP = ("-Xms256m", "-Xmx768m")
CLUSTER_HEAP = ("-Xms128m", "-Xmx384m")
"""Per node of a local cluster: three JVMs share the machine with everything else."""
JVM_OPTIONS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
SCRAM_READY_TIMEOUT_S = 30.0
MAVEN_REPORT_EVERY = 25
"""Report Maven's progress every this many downloaded files (a cold resolve fetches ~350)."""


class Kafka:
    """The local Kafka: node 1 on the first address of ``settings.kafka.bootstrap_servers``,
    the others of a cluster on the ports after it."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._paths = Paths.for_service(settings, self.name)
        self._host, self._port = broker_address(settings.kafka)
        self._sasl_port = self._port + SASL_PORT_OFFSET
        self._nodes = kafka_nodes(settings, self._host, self._port)
        self._kafka = KafkaSettings(  # the stack's own calls use the plain listeners
            bootstrap_servers=",".join(node.address for node in self._nodes),
            topics=settings.kafka.topics,
            layout=settings.kafka.layout,
        )
        self._tls = TlsFiles.of(settings.stack.state_dir)
        self._version = pinned_version()

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def sasl_address(self) -> str:
        return f"{self._host}:{self._sasl_port}"

    @property
    def sasl_password_file(self) -> Path:
        return local_sasl_password_file(self._settings.stack.state_dir)

    @property
    def libs(self) -> Path:
        return self._paths.cache / self._version / "libs"

    @property
    def server_properties(self) -> Path:
        return self._nodes[0].server_properties

    @property
    def data_dir(self) -> Path:
        return self._nodes[0].data_dir

    @property
    def nodes(self) -> list[KafkaNode]:
        return list(self._nodes)

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
        stopped = []
        for node in self._nodes:
            running = self._node_pid(node)
            if running is not None:
                report(f"{self._label(node)}: already running (pid {running}) on {node.address}")
                config = self._config_text(node)
                note_config_drift(self._label(node), node.server_properties, config, report)
            else:
                stopped.append(node)
        if stopped:
            self._start_nodes(stopped, report)
        self._ensure_scram_user(report)
        create_kotaflow_topics(self._kafka, report, limits=SizeLimits.of(self._settings.bridge))
        warm_group_coordinator(self._kafka, self._kafka.topics.raw, report)

    def stop(self, report: Report) -> None:
        """Every node at once: the last node of a cluster stopped alone would wait for a
        controller majority to shut down cleanly until the timeout kills it."""

        def stop_node(node: KafkaNode) -> None:
            if stop_pid(node.paths, STOP_TIMEOUT_S, expect=str(node.server_properties)):
                report(f"{self._label(node)}: stopped")

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self._nodes)) as pool:
            list(pool.map(stop_node, self._nodes))

    def status(self) -> ServiceStatus:
        pid = self._pid()
        view = self._describe()
        healthy = view is not None and view.brokers >= len(self._nodes)
        detail = "" if healthy else ("not running" if pid is None else "running but not answering")
        extra = {} if view is None else {"cluster_id": view.cluster_id, "topics": view.partitions}
        return ServiceStatus(
            name=self.name,
            healthy=healthy,
            address=self.address,
            version=self._installed_version(),
            pid=pid,
            log=str(self._paths.log),
            detail=detail or self._missing_brokers(view),
            extra={
                "controller": f"{self._host}:{self._port + 1}",
                "nodes": {
                    n.node_id: {"address": n.address, "pid": self._node_pid(n)} for n in self._nodes
                },
                "sasl_ssl": self.sasl_address,
                "sasl_user": LOCAL_SCRAM_USER,
                "sasl_healthy": healthy and self._scram_login_works(),
                "sasl_password_file": str(self.sasl_password_file),
                "ca_file": str(self._tls.ca_cert),
                **extra,
            },
        )

    def _start_nodes(self, nodes: list[KafkaNode], report: Report) -> None:
        """Start the stopped ``nodes`` together (a cluster's controllers need a majority to
        elect a leader), then wait until every node of the stack is a broker."""
        if not self._installed():
            raise ServiceError("kafka: not installed; run `kotaflow stack up` to install it")
        setting = "KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS"
        for node in nodes:
            label = self._label(node)
            require_free_port(node.host, node.port, label, setting)
            require_free_port(node.host, node.controller_port, f"{label} controller", setting)
            require_free_port(node.host, node.sasl_port, f"{label} SASL_SSL", setting)
        ensure_tls(self._settings.stack.state_dir, [self._host], report)
        self._sasl_password()  # made before the broker starts, so it is ready for the user
        pids = {}
        for node in nodes:
            self._write_config(node)
            self._format_storage_once(node, report)
            report(
                f"{self._label(node)}: starting {self._version} on {node.address} "
                f"(log {node.paths.log})"
            )
            heap = HEAP if len(self._nodes) == 1 else CLUSTER_HEAP
            argv = [*self._java(node, heap), "kafka.Kafka", str(node.server_properties)]
            pids[node.node_id] = spawn(argv, node.paths)
        for node in nodes:
            wait_until(
                functools.partial(self._answers, node),
                START_TIMEOUT_S,
                f"{self._label(node)} on {node.address}",
                node.paths,
                pids[node.node_id],
            )
            report(f"{self._label(node)}: healthy (pid {pids[node.node_id]})")

    def _label(self, node: KafkaNode) -> str:
        return self.name if len(self._nodes) == 1 else f"{self.name} node {node.node_id}"

    def _missing_brokers(self, view: ClusterView | None) -> str:
        if view is None or view.brokers >= len(self._nodes):
            return ""
        return f"{view.brokers} of {len(self._nodes)} brokers in the cluster"

    def _describe(self) -> ClusterView | None:
        """Asks the nodes whose port is open (the client logs an error for every refused
        connection); None when none answers."""
        open_nodes = [n.address for n in self._nodes if port_open(n.host, n.port)]
        if not open_nodes:
            return None
        return describe_cluster(
            self._kafka.model_copy(update={"bootstrap_servers": ",".join(open_nodes)})
        )

    def _answers(self, node: KafkaNode) -> bool:
        """The node answers and the cluster counts it among its brokers."""
        if not port_open(node.host, node.port):
            return False
        view = describe_cluster(self._kafka.model_copy(update={"bootstrap_servers": node.address}))
        return view is not None and view.brokers >= len(self._nodes)

    def _java(self, node: KafkaNode | None = None, heap: tuple[str, ...] = HEAP) -> list[str]:
        state = (node or self._nodes[0]).paths.state
        return [
            "java",
            *heap,
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={state / LOG4J_CONFIG.name}",
            "-cp",
            f"{self.libs}/*",
        ]

    def _config_text(self, node: KafkaNode) -> str:
        replication, min_isr = internal_replication(self._nodes)
        return render_template(
            SERVER_TEMPLATE,
            node_id=node.node_id,
            quorum=quorum_line(self._nodes),
            host=node.host,
            port=node.port,
            controller_port=node.controller_port,
            sasl_port=node.sasl_port,
            keystore=self._tls.server_pem,
            data_dir=node.data_dir,
            replication=replication,
            min_isr=min_isr,
        )

    def _sasl_password(self) -> str:
        """The SCRAM user's password, made once (0600) and kept."""
        path = self.sasl_password_file
        if not path.is_file() or not path.read_text(encoding="utf-8").strip():
            write_private(path, secrets.token_urlsafe(24) + "\n")
        return path.read_text(encoding="utf-8").strip()

    def _sasl_settings(self) -> Settings:
        """Client settings for the SASL_SSL listener as the stack's SCRAM user."""
        kafka = KafkaSettings(
            bootstrap_servers=self.sasl_address,
            security_protocol="SASL_SSL",
            sasl_mechanism=SCRAM_MECHANISM,
            sasl_username=LOCAL_SCRAM_USER,
            sasl_password_file=self.sasl_password_file,
            ca_file=self._tls.ca_cert,
        )
        return self._settings.model_copy(update={"kafka": kafka})

    def _scram_login_works(self) -> bool:
        if not (port_open(self._host, self._sasl_port) and self.sasl_password_file.is_file()):
            return False
        return describe_with(client_options(self._sasl_settings())) is not None

    def _ensure_scram_user(self, report: Report) -> None:
        """Add (or reset) the SCRAM user when a login fails; a no-op when it works.

        A broker started from an older config has no SASL listener: the drift note above
        already says a restart applies it.
        """
        if not port_open(self._host, self._sasl_port) or self._scram_login_works():
            return
        password = self._sasl_password()
        report(f"kafka: adding SCRAM user {LOCAL_SCRAM_USER} ({SCRAM_MECHANISM})")
        with tempfile.TemporaryDirectory(dir=self._paths.state) as folder:
            config, output = Path(folder) / "scram.properties", Path(folder) / "output.log"
            # ConfigCommand's file format: the value without the brackets --add-config needs.
            line = f"{SCRAM_MECHANISM}=iterations={SCRAM_ITERATIONS},password={password}\n"
            write_private(config, line)
            try:
                run_logged(
                    [
                        *self._java(heap=("-Xmx256m",)),
                        "kafka.admin.ConfigCommand",
                        *("--bootstrap-server", self.address, "--alter"),
                        *("--entity-type", "users", "--entity-name", LOCAL_SCRAM_USER),
                        *("--add-config-file", str(config)),
                    ],
                    output,
                    report,
                    what="kafka: adding the SCRAM user",
                )
            except ServiceError as err:  # the tool may quote the file it was given
                raise ServiceError(str(err).replace(password, "***")) from None
            finally:  # kept in the service log, without the password
                text = output.read_text(encoding="utf-8", errors="replace")
                with self._paths.log.open("a", encoding="utf-8") as log:
                    log.write(text.replace(password, "***"))
        deadline = time.monotonic() + SCRAM_READY_TIMEOUT_S
        while not self._scram_login_works():
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"kafka: SCRAM login on {self.sasl_address} still fails after adding the "
                    f"user; log {self._paths.log}"
                )
            time.sleep(0.5)

    def _write_config(self, node: KafkaNode) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        node.server_properties.write_text(self._config_text(node), encoding="utf-8")
        shutil.copyfile(LOG4J_CONFIG, node.paths.state / LOG4J_CONFIG.name)

    def _format_storage_once(self, node: KafkaNode, report: Report) -> None:
        """One node formats a standalone dynamic quorum; a cluster's nodes share a cluster id
        and the static voters of their configuration."""
        if (node.data_dir / "meta.properties").exists():
            return
        report(f"{self._label(node)}: formatting storage in {node.data_dir}")
        standalone = ["--standalone"] if len(self._nodes) == 1 else []
        run_logged(
            [
                *self._java(node, heap=("-Xmx256m",)),
                "kafka.tools.StorageTool",
                "format",
                "--config",
                str(node.server_properties),
                "--cluster-id",
                self._cluster_id(),
                *standalone,
                "--ignore-formatted",
            ],
            node.paths.log,
            report,
            what=f"{self._label(node)} storage format",
        )

    def _cluster_id(self) -> str:
        """Kept in the state directory, so a re-format after a partial failure matches."""
        path = self._paths.state / "cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id(), encoding="utf-8")
        return path.read_text(encoding="utf-8").strip()

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
        return self._node_pid(self._nodes[0])

    def _node_pid(self, node: KafkaNode) -> int | None:
        return read_pid(node.paths.pidfile, expect=str(node.server_properties))


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
    """The local broker's PLAINTEXT listener: the first bootstrap address, or port - 2 when
    the settings point the clients at the SASL listener."""
    host, _, port = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    offset = SASL_PORT_OFFSET if kafka.security_protocol.startswith("SASL_") else 0
    return host, int(port) - offset


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, as Kafka makes
    them (never starting with '-', which Kafka's tools would read as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
