"""``deploy/systemd``: units systemd accepts, running real kotaflow commands."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kotaflow.cli import app

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED = "/opt/kotaflow/bin/kotaflow"
STAGES = ("validate", "store", "aggregate")


def _values(unit: Path, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", unit.read_text(encoding="utf-8"), flags=re.MULTILINE)


def test_systemd_verifies_every_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    ours = str(Path(sys.prefix) / "bin" / "kotaflow")
    for unit in UNITS.iterdir():
        name = unit.name.replace("@.", "@validate.")
        (tmp_path / name).write_text(
            unit.read_text(encoding="utf-8").replace(INSTALLED, ours), encoding="utf-8"
        )
    names = sorted(str(p) for p in tmp_path.iterdir())
    done = subprocess.run(
        [analyze, "verify", "--man=no", *names], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


def test_every_service_runs_a_real_kotaflow_command_as_the_kotaflow_user() -> None:
    runner = CliRunner()
    for unit in UNITS.glob("*.service"):
        (command,) = _values(unit, "ExecStart")
        argv = shlex.split(command)
        assert argv[0] == INSTALLED, unit.name
        for stage in STAGES if "%i" in command else ("",):
            args = [a.replace("%i", stage) for a in argv[1:]]
            result = runner.invoke(app, [*args, "--help"])
            assert result.exit_code == 0, (unit.name, result.output)
        if "render" not in command:
            assert _values(unit, "User") == ["kotaflow"], unit.name
            assert _values(unit, "Restart") == ["on-failure"], unit.name


def test_the_target_starts_every_unit_and_each_stage() -> None:
    (wants,) = _values(UNITS / "kotaflow.target", "Wants")
    wanted = set(wants.split())
    services = {p.name for p in UNITS.glob("*.service") if "@" not in p.name}
    assert services <= wanted
    assert {f"kotaflow-process@{s}.service" for s in STAGES} <= wanted
    for name in wanted:
        template = re.sub(r"@[^.]+\.", "@.", name)
        assert (UNITS / template).is_file(), name


def test_the_bridge_connects_over_tls_to_the_vm_brokers_certificate() -> None:
    """The VM guide puts the broker files in /etc/mosquitto/kotaflow (its sed of the shared
    Mosquitto config): the bridge verifies the certificate made there (tls/), on TLS."""
    env = dict(v.split("=", 1) for v in _values(UNITS / "kotaflow-bridge.service", "Environment"))
    assert env["KOTAFLOW_MQTT__TLS"] == "true"
    conf = (UNITS.parent / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    guide = (UNITS.parents[1] / "docs" / "deployment.md").read_text(encoding="utf-8")
    (sed,) = re.findall(r"sudo sed '([^']+)'", guide)
    vm_conf = subprocess.run(
        ["sed", sed], input=conf, capture_output=True, text=True, check=True
    ).stdout  # the guide's own rewrite of the shared config
    (certfile,) = re.findall(r"^certfile (\S+)$", vm_conf, flags=re.MULTILINE)
    assert env["KOTAFLOW_MQTT__CA_FILE"] == str(Path(certfile).with_name("ca.crt"))


def test_the_public_unit_serves_https_itself_and_trusts_no_forwarded_header() -> None:
    """No proxy in front on the VM: the unit's certificate settings are set, the one port
    it listens on is the HTTPS one, and X-Forwarded-For is not trusted."""
    unit = UNITS / "kotaflow-public.service"
    env = dict(v.split("=", 1) for v in _values(unit, "Environment"))
    assert env["KOTAFLOW_PUBLIC__TLS_CERT_FILE"].endswith("/server.crt")
    assert env["KOTAFLOW_PUBLIC__TLS_KEY_FILE"].endswith("/server.key")
    (command,) = _values(unit, "ExecStart")
    argv = shlex.split(command)
    assert argv[argv.index("--port") + 1] == "8443"
    assert "--trust-forwarded" not in argv
    assert "--tls-cert-file" not in argv  # one place for the files: the settings above
