"""The exact Flower command lines of a national deployment, for a set of forces and hosts.

A :class:`DeploymentPlan` describes one SuperLink (national unit) and one SuperNode per force
and renders, in order, what each operator types (``anprfed deploy plan`` prints it):

1. national SuperLink host: ``flower-superlink`` with TLS (``--ssl-*``), SuperNode
   authentication (``--enable-supernode-auth``), a database and a log file in its state folder,
   and no runtime dependency installation (the ServerApp runs in the installed environment);
2. national operator: the Flower connection (``$FLWR_HOME/config.toml``: address +
   ``root-certificates``) and one ``flwr supernode register <force>.pub`` per force;
3. each force's host: ``flower-supernode`` with the CA certificate, its private key and its
   node config ``store='...' key-file='...'`` (``client_force.node_settings``);
4. national operator: ``flwr run <app> <connection> --run-config '...'``.

The commands are argv lists (:meth:`superlink_argv` and so on), so tests run exactly what the
plan prints. flwr 1.41 serves the Fleet, Control and Runtime APIs on one HTTPS port
(``--host``/``--port``); the SuperLink starts ``flower-superexec`` itself (it must be on
``PATH``), and each SuperNode starts its own for the ClientApps.

Over 400 lines on purpose: one dataclass renders all four machines' sections from the same argv
lists the loopback test runs; split, the printed plan and the tested commands could drift.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from deployment.certs import CA_CERT, SERVER_CERT, SERVER_KEY, parse_hosts
from deployment.node_keys import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, check_force_names
from federation.flower_settings import FlowerSettings, FlowerSettingsError

DEFAULT_PORT = 9092
DEFAULT_CONNECTION = "anprfed-national"
DEFAULT_TLS_DIR = "/etc/anprfed/tls"
DEFAULT_STATE_DIR = "/var/lib/anprfed/superlink"
DEFAULT_NODE_KEYS_DIR = "/etc/anprfed/supernode-keys"
DEFAULT_STORE = "/srv/anprfed/{force}/store"
DATABASE_NAME = "superlink.db"
LOG_NAME = "superlink.log"
SUPERLINK_HOME_NAME = "flwr-home"

DEFAULT_OPERATOR_HOME = "$HOME/.flwr-anprfed"
"""Default ``FLWR_HOME`` of the operator's CLI (``--operator-home``; an exported ``FLWR_HOME``
wins): a Flower config of its own holding this deployment's connection and node register."""
_CONNECTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OPERATOR_HOME = re.compile(r"^(\$HOME/|/)[A-Za-z0-9._/-]*$")

BASE_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
"""Environment every Flower process of the deployment gets (no telemetry, no update check)."""


class PlanError(ValueError):
    """The plan's inputs do not fit together (names the option)."""


@dataclass(frozen=True)
class ForceNode:
    """One force's SuperNode: paths as they are on that force's host."""

    name: str
    store: str
    key_file: str  # "" = the master secret comes from ANPRFED_KEY_FILE / ANPRFED_PASSPHRASE
    private_key: str
    public_key: str  # where the national operator keeps the copy it registers
    runtime_port: int | None = None  # the SuperNode's local Runtime API (Flower default 9094)
    flwr_home: str = ""  # FLWR_HOME for this SuperNode ("" = the user's ~/.flwr)

    def node_config(self) -> str:
        """The ``--node-config`` value: ``store="..."`` and, if set, ``key-file="..."``."""
        pairs = [("store", self.store)] + ([("key-file", self.key_file)] if self.key_file else [])
        for key, value in pairs:
            if '"' in value or "\\" in value or not value.startswith("/"):
                raise PlanError(
                    f"force {self.name}: {key} must be an absolute path without a double "
                    f"quote or backslash, got {value!r}"
                )
        return " ".join(f'{k}="{v}"' for k, v in pairs)


@dataclass(frozen=True)
class DeploymentPlan:
    """One national SuperLink and one SuperNode per force (see the module docstring)."""

    superlink_host: str  # the name or address forces and the CLI connect to (in the cert SANs)
    port: int
    forces: tuple[ForceNode, ...]
    tls_dir: str = DEFAULT_TLS_DIR  # on the SuperLink host: ca.pem, server.pem, server.key
    state_dir: str = DEFAULT_STATE_DIR  # on the SuperLink host: database, log, FLWR_HOME
    force_ca_cert: str = ""  # on force hosts and the CLI host ("" = <tls_dir>/ca.pem)
    bind_host: str = ""  # where the SuperLink listens ("" = superlink_host if an IP, else 0.0.0.0)
    connection: str = DEFAULT_CONNECTION
    app: str = "."
    run_config: Mapping[str, bool | int | float | str] = field(default_factory=dict)
    operator_home: str = DEFAULT_OPERATOR_HOME  # the operator CLI's FLWR_HOME

    def __post_init__(self) -> None:
        parse_hosts([self.superlink_host])
        if not 1 <= self.port <= 65535:
            raise PlanError(f"--port must be in 1..65535, got {self.port}")
        if not self.forces:
            raise PlanError("a deployment needs at least one force")
        check_force_names([f.name for f in self.forces])
        ports = [f.runtime_port for f in self.forces if f.runtime_port is not None]
        if len(set(ports)) != len(ports) or self.port in ports:
            raise PlanError("SuperNode runtime ports must differ from each other and the SuperLink")
        for force in self.forces:
            force.node_config()  # validate paths now
        _check_run_config(self.run_config)
        if not _OPERATOR_HOME.match(self.operator_home):
            raise PlanError(
                f"--operator-home {self.operator_home!r}: an absolute path or $HOME/..., of "
                "letters, digits, '.', '_', '-' and '/'"
            )
        if not _CONNECTION_NAME.match(self.connection):
            raise PlanError(f"--connection {self.connection!r}: use letters, digits, '-' or '_'")

    # ------------------------------------------------------------------ paths
    @property
    def address(self) -> str:
        """``host:port`` the SuperNodes and the ``flwr`` CLI use."""
        host = self.superlink_host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def listen_host(self) -> str:
        """The SuperLink's ``--host``."""
        if self.bind_host:
            return self.bind_host
        try:
            ipaddress.ip_address(self.superlink_host)
        except ValueError:
            return "0.0.0.0"
        return self.superlink_host

    @property
    def ca_cert(self) -> str:
        """The CA certificate path on the SuperLink host."""
        return str(PurePosixPath(self.tls_dir) / CA_CERT)

    @property
    def client_ca_cert(self) -> str:
        """The CA certificate path on force hosts and the operator's CLI host."""
        return self.force_ca_cert or self.ca_cert

    @property
    def database(self) -> str:
        """The SuperLink's SQLite database (``--database``)."""
        return str(PurePosixPath(self.state_dir) / DATABASE_NAME)

    @property
    def log_file(self) -> str:
        """The SuperLink's log file (``--log-file``)."""
        return str(PurePosixPath(self.state_dir) / LOG_NAME)

    @property
    def superlink_home(self) -> str:
        """``FLWR_HOME`` of the SuperLink and its SuperExec (app bundles it unpacks)."""
        return str(PurePosixPath(self.state_dir) / SUPERLINK_HOME_NAME)

    @property
    def operator_home_export(self) -> str:
        """``export FLWR_HOME=...`` of the operator's shell: an exported ``FLWR_HOME`` wins,
        else :attr:`operator_home` (a leading ``$HOME/`` expands)."""
        return f'export FLWR_HOME="${{FLWR_HOME:-{self.operator_home}}}"'

    @property
    def node_register(self) -> str:
        """The node register (force -> node id) beside the operator's connection."""
        return "$FLWR_HOME/node-register.json"

    def force(self, name: str) -> ForceNode:
        """The force called ``name``."""
        for force in self.forces:
            if force.name == name:
                return force
        raise PlanError(f"no force {name!r} in the plan")

    # ------------------------------------------------------------------ commands
    def superlink_argv(self) -> list[str]:
        """``flower-superlink`` with TLS, SuperNode authentication, database and log file."""
        return [
            "flower-superlink",
            "--ssl-ca-certfile", self.ca_cert,
            "--ssl-certfile", str(PurePosixPath(self.tls_dir) / SERVER_CERT),
            "--ssl-keyfile", str(PurePosixPath(self.tls_dir) / SERVER_KEY),
            "--enable-supernode-auth",
            "--host", self.listen_host,
            "--port", str(self.port),
            "--database", self.database,
            "--log-file", self.log_file,
            "--disable-runtime-dependency-installation",
        ]  # fmt: skip

    def superlink_env(self) -> dict[str, str]:
        """Environment of the SuperLink (its own ``FLWR_HOME`` inside the state folder)."""
        return {**BASE_ENV, "FLWR_HOME": self.superlink_home}

    def flwr_config_toml(self) -> str:
        """The connection for the operator's ``$FLWR_HOME/config.toml``."""
        return (
            f"[superlink]\ndefault = {json.dumps(self.connection)}\n\n"
            f"[superlink.{self.connection}]\n"
            f"address = {json.dumps(self.address)}\n"
            f"root-certificates = {json.dumps(self.client_ca_cert)}\n"
        )

    def register_argv(self, force: ForceNode) -> list[str]:
        """``flwr supernode register`` of ``force``'s public key (national operator)."""
        return [
            "flwr", "supernode", "register", force.public_key, self.connection,
            "--name", force.name,
        ]  # fmt: skip

    def supernode_argv(self, force: ForceNode) -> list[str]:
        """``flower-supernode`` for ``force``: CA, private key and node config."""
        argv = [
            "flower-supernode",
            "--root-certificates", self.client_ca_cert,
            "--superlink", self.address,
            "--auth-supernode-private-key", force.private_key,
            "--node-config", force.node_config(),
        ]  # fmt: skip
        if force.runtime_port is not None:
            argv += ["--port", str(force.runtime_port)]
        return argv

    def supernode_env(self, force: ForceNode) -> dict[str, str]:
        """Environment of ``force``'s SuperNode."""
        return {**BASE_ENV, **({"FLWR_HOME": force.flwr_home} if force.flwr_home else {})}

    def run_config_text(self) -> str:
        """``--run-config`` value: this deployment's quorum, then the user's keys."""
        values = {
            "min-available-nodes": len(self.forces),
            "min-replies": len(self.forces),
            **self.run_config,
        }
        return " ".join(f"{k}={_toml_value(k, v)}" for k, v in values.items())

    def run_argv(self, stream: bool = True) -> list[str]:
        """``flwr run`` of the Flower App on this deployment's connection."""
        argv = ["flwr", "run", self.app, self.connection, "--run-config", self.run_config_text()]
        return [*argv, "--stream"] if stream else argv

    # ------------------------------------------------------------------ rendering
    def as_dict(self) -> dict[str, Any]:
        """Every command as an argv list, with its environment (for ``--format json``)."""
        return {
            "superlink": {"argv": self.superlink_argv(), "env": self.superlink_env()},
            "flwr_config_toml": self.flwr_config_toml(),
            "register": {f.name: self.register_argv(f) for f in self.forces},
            "supernodes": {
                f.name: {"argv": self.supernode_argv(f), "env": self.supernode_env(f)}
                for f in self.forces
            },
            "run": self.run_argv(),
        }

    def render(self) -> str:
        """The plan as a commented shell script, one section per machine and step."""
        out = [
            "# anprfed deployment plan (flwr 1.41 Deployment Engine). Every machine needs anprfed",
            "# installed and its venv's bin/ first on PATH (the SuperLink and SuperNodes start",
            "# flower-superexec from PATH).",
            "",
            f"# == 1. national unit, SuperLink host ({self.address}) ==",
            f"#    needs {self.ca_cert}, {PurePosixPath(self.tls_dir) / SERVER_CERT} and "
            f"{PurePosixPath(self.tls_dir) / SERVER_KEY} (0600); never ca.key",
            "#    umask 077 and a 0700 state folder: superlink.db (and its -wal) hold every",
            "#    message; nobody but the SuperLink's user may read them",
            "umask 077",
            f"mkdir -p -m 0700 {shlex.quote(self.state_dir)} {shlex.quote(self.superlink_home)}",
            f"chmod 0700 {shlex.quote(self.state_dir)}",
            _env_line(self.superlink_env()) + " \\",
            "  " + _join(self.superlink_argv()),
            "",
            "# == 2. national unit, operator CLI: the connection, one registration per force ==",
            "#    check each .pub fingerprint with the force over a second channel first:",
            "#    ssh-keygen -lf <force>.pub",
            f"{self.operator_home_export}   # a Flower config of its own: ~/.flwr untouched",
            'mkdir -p -m 0700 "$FLWR_HOME"',
            "cat > \"$FLWR_HOME/config.toml\" <<'EOF'",
            self.flwr_config_toml().rstrip("\n"),
            "EOF",
        ]
        out.append(
            "#    each registration's node id goes into the node register (revocation needs it:"
            " `anprfed deploy node-id FORCE`)"
        )
        out += [
            _join([*self.register_argv(f), "--format", "json"])
            + " | "
            + _join(["anprfed", "deploy", "record-node", f.name, "--register"])
            + f' "{self.node_register}"'
            for f in self.forces
        ]
        out.append(f"flwr supernode ls {shlex.quote(self.connection)}")
        for force in self.forces:
            out += [
                "",
                f"# == 3. force {force.name}, its own SuperNode host ==",
                f"#    needs {self.client_ca_cert} and {force.private_key} (0600, never leaves)",
            ]
            if not force.key_file:
                out.append(
                    "#    the store's master secret: export ANPRFED_KEY_FILE or "
                    "ANPRFED_PASSPHRASE for this SuperNode"
                )
            if force.flwr_home:
                out.append(f"mkdir -p {shlex.quote(force.flwr_home)}")
            out += [
                _env_line(self.supernode_env(force)) + " \\",
                "  " + _join(self.supernode_argv(force)),
            ]
        out += [
            "",
            "# == 4. national unit, operator CLI, in the Flower App folder (this repository) ==",
            "#    the run config's window-start/window-end/as-of must fit the forces' data",
            "#    (each force ingests with `anprfed force ingest --as-of` matching its export)",
            self.operator_home_export,
            _join(self.run_argv()),
            "",
        ]
        return "\n".join(out)


def _join(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def _env_line(env: Mapping[str, str]) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def _toml_value(key: str, value: bool | int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if '"' not in value and "\\" not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise PlanError(f"run-config {key}: a string may not hold both quote characters")


def _check_run_config(run_config: Mapping[str, Any]) -> None:
    try:
        FlowerSettings.from_run_config(dict(run_config))
    except FlowerSettingsError as exc:
        raise PlanError(str(exc)) from None


def parse_run_config(text: str) -> dict[str, bool | int | float | str]:
    """``k=v k2="s"`` pairs (the ``flwr run --run-config`` syntax) into a checked mapping."""
    from flwr.common.config import parse_config_args  # the exact parser flwr run uses

    try:
        values = parse_config_args([text]) if text.strip() else {}
    except Exception as exc:  # click.ClickException from flwr
        raise PlanError(f"--run-config: {getattr(exc, 'message', exc)}") from None
    _check_run_config(values)
    return values


def build_plan(
    forces: Sequence[str],
    superlink_host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    tls_dir: str = DEFAULT_TLS_DIR,
    state_dir: str = DEFAULT_STATE_DIR,
    node_keys_dir: str = DEFAULT_NODE_KEYS_DIR,
    force_ca_cert: str = "",
    store: str = DEFAULT_STORE,
    key_file: str = "",
    supernode_home: str = "",
    supernode_port_base: int = 0,
    bind_host: str = "",
    connection: str = DEFAULT_CONNECTION,
    app: str = ".",
    run_config: Mapping[str, bool | int | float | str] | None = None,
    operator_home: str = DEFAULT_OPERATOR_HOME,
) -> DeploymentPlan:
    """A plan from per-force path templates: ``{force}`` is replaced by each force's name.

    ``node_keys_dir`` follows the ``anprfed deploy node-keys`` layout
    (``<dir>/<force>/supernode.key`` on the force host, ``.pub`` copied to the national unit).
    ``supernode_port_base`` > 0 gives force *i* the Runtime API port ``base + i`` (needed when
    several SuperNodes share one host); 0 keeps Flower's default.
    """
    names = check_force_names(forces)
    for template, option in ((store, "--store"), (key_file, "--key-file")):
        if template and len(names) > 1 and "{force}" not in template:
            raise PlanError(f"{option} must contain {{force}} when there are several forces")
    if supernode_port_base < 0 or supernode_port_base + len(names) > 65535:
        raise PlanError("--supernode-port-base must leave room for one port per force")
    keys = PurePosixPath(node_keys_dir)
    nodes = tuple(
        ForceNode(
            name=name,
            store=store.format(force=name),
            key_file=key_file.format(force=name),
            private_key=str(keys / name / PRIVATE_KEY_NAME),
            public_key=str(keys / name / PUBLIC_KEY_NAME),
            runtime_port=supernode_port_base + i if supernode_port_base else None,
            flwr_home=supernode_home.format(force=name),
        )
        for i, name in enumerate(names)
    )
    return DeploymentPlan(
        superlink_host=superlink_host,
        port=port,
        forces=nodes,
        tls_dir=tls_dir,
        state_dir=state_dir,
        force_ca_cert=force_ca_cert,
        bind_host=bind_host,
        connection=connection,
        app=app,
        run_config=dict(run_config or {}),
        operator_home=operator_home,
    )
