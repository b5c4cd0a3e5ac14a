"""``anprfed deploy``: TLS material, SuperNode keys and the command plan of a real deployment.

Examples::

    anprfed deploy certs /etc/anprfed/tls --host national.example --host 10.0.0.5
    anprfed deploy node-keys ./supernode-keys --forces cheshire,cumbria,merseyside
    anprfed deploy plan --forces cheshire,cumbria,merseyside --superlink-host national.example \\
        --run-config 'num-server-rounds=5 window-start="2025-01-01" window-end="2025-07-01"'
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from deployment.certs import (
    DEFAULT_CA_DAYS,
    DEFAULT_SERVER_DAYS,
    CertificateError,
    describe_certificate,
    write_tls_material,
)
from deployment.files import DeployFileError
from deployment.node_keys import NodeKeyError, write_node_keys
from deployment.node_register import node_id, parse_register_output, record_node
from deployment.plan import (
    DEFAULT_CONNECTION,
    DEFAULT_NODE_KEYS_DIR,
    DEFAULT_OPERATOR_HOME,
    DEFAULT_PORT,
    DEFAULT_STATE_DIR,
    DEFAULT_STORE,
    DEFAULT_TLS_DIR,
    PlanError,
    build_plan,
    parse_run_config,
)

CA_PASSPHRASE_ENV = "ANPRFED_CA_PASSPHRASE"

app = typer.Typer(
    help="Real deployment on Flower's Deployment Engine: TLS, SuperNode keys, command plan.",
    no_args_is_help=True,
    add_completion=False,
)
_console = Console()
_errors = Console(stderr=True)


def _fail(exc: Exception) -> typer.Exit:
    _errors.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
    return typer.Exit(code=2)


@app.command()
def certs(
    directory: str = typer.Argument(..., help="Folder for ca.pem, ca.key, server.pem, server.key."),
    host: list[str] = typer.Option(
        ...,
        "--host",
        help="Name or IP the SuperNodes and the flwr CLI use to reach the SuperLink "
        "(repeat; each becomes a subject alternative name).",
    ),
    ca_days: int = typer.Option(DEFAULT_CA_DAYS, help="CA validity in days."),
    server_days: int = typer.Option(DEFAULT_SERVER_DAYS, help="Server certificate validity."),
    reuse_ca: bool = typer.Option(
        False, "--reuse-ca", help="Keep the CA in DIRECTORY; issue a new server certificate."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files."),
) -> None:
    """A private CA and the SuperLink's TLS certificate for the given hosts."""
    passphrase = os.environ.get(CA_PASSPHRASE_ENV, "").encode() or None
    try:
        files = write_tls_material(
            directory,
            host,
            ca_days=ca_days,
            server_days=server_days,
            reuse_ca=reuse_ca,
            overwrite=overwrite,
            ca_passphrase=passphrase,
        )
        server = describe_certificate(files.server_cert)
    except (CertificateError, DeployFileError) as exc:
        raise _fail(exc) from None
    table = Table(title="TLS material", show_lines=False)
    for column in ("file", "goes to", "secret"):
        table.add_column(column)
    table.add_row(str(files.ca_cert), "SuperLink, every force, the flwr CLI", "no")
    table.add_row(
        str(files.ca_key),
        "offline storage (only to issue server certificates)"
        + (", encrypted" if passphrase else ""),
        "YES",
    )
    table.add_row(str(files.server_cert), "SuperLink host", "no")
    table.add_row(str(files.server_key), "SuperLink host only", "YES")
    _console.print(table)
    names = ", ".join([*server.dns_names, *server.ip_addresses])
    _console.print(
        f"server certificate for {names}, valid until {server.not_after:%Y-%m-%d}, "
        f"SHA-256 {server.sha256}",
        highlight=False,
    )


@app.command("node-keys")
def node_keys(
    directory: str = typer.Argument(..., help="Folder for <force>/supernode.key and .pub."),
    forces: list[str] = typer.Option(
        ..., "--forces", help="Force names, comma-separated or repeated."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing keys."),
) -> None:
    """EC P-384 key pairs for SuperNode authentication, one per force."""
    try:
        pairs = write_node_keys(directory, forces, overwrite=overwrite)
    except (NodeKeyError, DeployFileError) as exc:
        raise _fail(exc) from None
    for pair in pairs:
        _console.print(
            f"{pair.force}: private {pair.private_key} (stays on the force host), "
            f"public {pair.public_key}, fingerprint {pair.fingerprint}",
            highlight=False,
            soft_wrap=True,
        )
    _console.print(
        "Send only the .pub files to the national unit; confirm each fingerprint over a "
        "second channel before `flwr supernode register`.",
        highlight=False,
    )


@app.command()
def plan(
    forces: list[str] = typer.Option(
        ..., "--forces", help="Force names, comma-separated or repeated."
    ),
    superlink_host: str = typer.Option(
        "127.0.0.1", help="Name or IP the forces use to reach the SuperLink (in the cert)."
    ),
    port: int = typer.Option(DEFAULT_PORT, help="The SuperLink's HTTPS port (all APIs)."),
    bind_host: str = typer.Option(
        "", help="SuperLink --host (default: --superlink-host if an IP, else 0.0.0.0)."
    ),
    tls_dir: str = typer.Option(DEFAULT_TLS_DIR, help="TLS folder on the SuperLink host."),
    state_dir: str = typer.Option(
        DEFAULT_STATE_DIR, help="SuperLink database, log and FLWR_HOME folder."
    ),
    node_keys_dir: str = typer.Option(
        DEFAULT_NODE_KEYS_DIR, help="Node-keys folder (<dir>/<force>/supernode.key|.pub)."
    ),
    force_ca_cert: str = typer.Option(
        "", help="CA certificate path on force and CLI hosts (default: <tls-dir>/ca.pem)."
    ),
    store: str = typer.Option(DEFAULT_STORE, help="Store path on each force host ({force})."),
    key_file: str = typer.Option(
        "", help="Master key file on each force host ({force}); empty: ANPRFED_KEY_FILE env."
    ),
    supernode_home: str = typer.Option(
        "", help="FLWR_HOME per SuperNode ({force}); needed when SuperNodes share a host."
    ),
    supernode_port_base: int = typer.Option(
        0, help="Runtime API port of force i = base + i (SuperNodes sharing a host); 0 = 9094."
    ),
    connection: str = typer.Option(DEFAULT_CONNECTION, help="Flower connection name."),
    app_dir: str = typer.Option(".", "--app", help="The Flower App folder for flwr run."),
    run_config: str = typer.Option(
        "", help="Run-config overrides (flwr syntax: 'k=v k2=\"text\"'); keys are checked."
    ),
    fmt: str = typer.Option("text", "--format", help="text (shell script) or json (argv lists)."),
    operator_home: str = typer.Option(
        DEFAULT_OPERATOR_HOME,
        help="FLWR_HOME of the operator's CLI (connection, node register); an exported "
        "FLWR_HOME wins.",
    ),
) -> None:
    """Print the exact flower-superlink, flwr supernode register, flower-supernode and flwr run
    command lines for these forces and hosts."""
    if fmt not in ("text", "json"):
        raise _fail(ValueError(f"--format must be text or json, got {fmt!r}"))
    try:
        deployment = build_plan(
            forces,
            superlink_host,
            port,
            tls_dir=tls_dir,
            state_dir=state_dir,
            node_keys_dir=node_keys_dir,
            force_ca_cert=force_ca_cert,
            store=store,
            key_file=key_file,
            supernode_home=supernode_home,
            supernode_port_base=supernode_port_base,
            bind_host=bind_host,
            connection=connection,
            app=app_dir,
            run_config=parse_run_config(run_config),
            operator_home=operator_home,
        )
    except (PlanError, NodeKeyError, CertificateError) as exc:
        raise _fail(exc) from None
    if fmt == "json":
        typer.echo(json.dumps(deployment.as_dict(), indent=2))
    else:
        typer.echo(deployment.render())


REGISTER_OPT = typer.Option(..., "--register", help="The node register file (JSON).")


@app.command("record-node")
def record_node_cmd(
    force: str = typer.Argument(..., help="The force whose SuperNode was just registered."),
    register: str = REGISTER_OPT,
) -> None:
    """Read `flwr supernode register ... --format json` output on stdin and record the force's
    node id in the register (revoking it later needs the id)."""
    text = sys.stdin.read()
    try:
        nid = parse_register_output(text)
        record_node(Path(register), force, nid)
    except DeployFileError as exc:
        raise _fail(exc) from None
    typer.echo(f"{force}: node id {nid} recorded in {register}")


@app.command("node-id")
def node_id_cmd(
    force: str = typer.Argument(..., help="The force."),
    register: str = REGISTER_OPT,
) -> None:
    """Print a force's node id from the register (e.g. for `flwr supernode unregister`)."""
    try:
        typer.echo(str(node_id(Path(register), force)))
    except DeployFileError as exc:
        raise _fail(exc) from None
