"""``deployment`` without a running Flower: certificates checked by real TLS handshakes,
node keys checked by Flower's own loaders and signatures, plans checked by Flower's own
parsers, and the ``anprfed deploy`` commands."""

from __future__ import annotations

import json
import shlex
import socket
import ssl
import stat
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from flwr.cli.flower_config import parse_superlink_connection
from flwr.cli.supernode.register import try_load_public_key
from flwr.common.config import parse_config_args
from flwr.supercore.primitives.asymmetric import (
    bytes_to_public_key,
    sign_message,
    verify_signature,
)
from typer.testing import CliRunner

from client_force.node_settings import resolve_node_store
from deployment.certs import (
    CertificateError,
    TlsFiles,
    describe_certificate,
    parse_hosts,
    write_tls_material,
)
from deployment.cli import app
from deployment.files import DeployFileError
from deployment.node_keys import (
    NodeKeyError,
    check_force_names,
    check_private_key,
    load_public_key,
    write_node_keys,
)
from deployment.plan import PlanError, build_plan, parse_run_config
from federation.flower_settings import FlowerSettings

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return write_tls_material(
        tmp_path_factory.mktemp("tls"), ["127.0.0.1", "localhost", "national.example"]
    )


@pytest.fixture(scope="module")
def tls_server(tls: TlsFiles) -> Iterator[int]:
    """A TLS server on 127.0.0.1 presenting the SuperLink certificate; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(timeout=5)
    listener.close()


def _handshake(port: int, server_name: str, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as conn,
    ):
        return conn.recv(2)


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "national.example"])
def test_clients_trusting_the_ca_accept_the_superlink_under_each_name(
    tls: TlsFiles, tls_server: int, name: str
) -> None:
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    assert _handshake(tls_server, name, context) == b"ok"


def test_clients_without_the_ca_or_with_another_name_are_refused(
    tls: TlsFiles, tls_server: int, tmp_path: Path
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        _handshake(tls_server, "localhost", ssl.create_default_context())
    other = write_tls_material(tmp_path, ["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls_server, "localhost", ssl.create_default_context(cafile=str(other.ca_cert)))
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        ctx = ssl.create_default_context(cafile=str(tls.ca_cert))
        _handshake(tls_server, "attacker.example", ctx)


def test_certificates_have_the_right_roles_names_and_permissions(tls: TlsFiles) -> None:
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    summary = describe_certificate(tls.server_cert)
    assert summary.dns_names == ("localhost", "national.example")
    assert summary.ip_addresses == ("127.0.0.1",)
    assert summary.not_after <= describe_certificate(tls.ca_cert).not_after
    assert (_mode(tls.ca_key), _mode(tls.server_key)) == (0o600, 0o600)
    assert (_mode(tls.ca_cert), _mode(tls.server_cert)) == (0o644, 0o644)


def test_key_material_is_never_replaced_silently_and_a_ca_can_be_reused(tmp_path: Path) -> None:
    files = write_tls_material(tmp_path, ["localhost"])
    before = {p.name: p.read_bytes() for p in files.all()}
    with pytest.raises(DeployFileError, match=r"ca\.pem already exists"):
        write_tls_material(tmp_path, ["localhost"])
    assert {p.name: p.read_bytes() for p in files.all()} == before
    with pytest.raises(DeployFileError, match=r"server\.pem already exists"):
        write_tls_material(tmp_path, ["localhost"], reuse_ca=True)
    renewed = write_tls_material(tmp_path, ["localhost", "10.0.0.5"], reuse_ca=True, overwrite=True)
    assert renewed.ca_cert.read_bytes() == before["ca.pem"]  # the forces keep trusting it
    assert renewed.server_cert.read_bytes() != before["server.pem"]
    assert describe_certificate(renewed.server_cert).ip_addresses == ("10.0.0.5",)
    ca = x509.load_pem_x509_certificate(renewed.ca_cert.read_bytes())
    x509.load_pem_x509_certificate(renewed.server_cert.read_bytes()).verify_directly_issued_by(ca)


def test_an_encrypted_ca_key_needs_its_passphrase(tmp_path: Path) -> None:
    files = write_tls_material(tmp_path, ["localhost"], ca_passphrase=b"correct horse")
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    with pytest.raises(CertificateError, match="is encrypted"):
        write_tls_material(tmp_path, ["localhost"], reuse_ca=True, overwrite=True)
    with pytest.raises(CertificateError, match="wrong passphrase"):
        write_tls_material(
            tmp_path, ["localhost"], reuse_ca=True, overwrite=True, ca_passphrase=b"wrong"
        )
    write_tls_material(
        tmp_path, ["localhost"], reuse_ca=True, overwrite=True, ca_passphrase=b"correct horse"
    )


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ([], "at least one"),
        ([" "], "empty"),
        (["0.0.0.0"], "bind-all"),
        (["::"], "bind-all"),
        (["bad_host!"], "neither an IP address nor a DNS name"),
        (["-lead.example"], "neither"),
    ],
)
def test_bad_hosts_are_refused_before_anything_is_written(
    tmp_path: Path, hosts: list[str], message: str
) -> None:
    with pytest.raises(CertificateError, match=message):
        write_tls_material(tmp_path, hosts)
    assert list(tmp_path.iterdir()) == []


def test_hosts_are_normalised_and_deduplicated() -> None:
    parsed = parse_hosts(["National.Example.", "national.example", "::1", "[::1]", "*.nw.example"])
    assert [str(h) for h in parsed] == ["national.example", "::1", "*.nw.example"]


# ---------------------------------------------------------------------------- node keys
def test_node_keys_load_in_flower_and_sign_what_the_registered_key_verifies(
    tmp_path: Path,
) -> None:
    pairs = write_node_keys(tmp_path, ["cheshire,cumbria", "merseyside"])
    assert [p.force for p in pairs] == ["cheshire", "cumbria", "merseyside"]
    for pair in pairs:
        assert _mode(pair.private_key) == 0o600
        check_private_key(pair.private_key)
        registered = bytes_to_public_key(try_load_public_key(pair.public_key))  # flwr's loader
        private = serialization.load_ssh_private_key(pair.private_key.read_bytes(), None)
        signature = sign_message(private, b"2026-01-01T00:00:00")  # as a SuperNode signs
        assert verify_signature(registered, b"2026-01-01T00:00:00", signature)
        assert load_public_key(pair.public_key).fingerprint == pair.fingerprint
        assert pair.fingerprint.startswith("SHA256:") and len(pair.fingerprint) == 50
    other = serialization.load_ssh_private_key(pairs[1].private_key.read_bytes(), None)
    registered = bytes_to_public_key(try_load_public_key(pairs[0].public_key))
    assert not verify_signature(registered, b"x", sign_message(other, b"x"))
    assert len({p.fingerprint for p in pairs}) == 3


def test_node_keys_refuse_bad_names_duplicates_and_replacement(tmp_path: Path) -> None:
    with pytest.raises(NodeKeyError, match="given twice"):
        check_force_names(["a,b", "a"])
    with pytest.raises(NodeKeyError, match="lower-case"):
        check_force_names(["Greater Manchester"])
    with pytest.raises(NodeKeyError, match="at least one"):
        check_force_names([" , "])
    write_node_keys(tmp_path, ["a"])
    key = (tmp_path / "a" / "supernode.key").read_bytes()
    with pytest.raises(DeployFileError, match="already exists"):
        write_node_keys(tmp_path, ["b", "a"])
    assert not (tmp_path / "b").exists()  # nothing written when one pair is refused
    assert (tmp_path / "a" / "supernode.key").read_bytes() == key
    (tmp_path / "a" / "supernode.key").chmod(0o644)
    with pytest.raises(NodeKeyError, match="chmod 600"):
        check_private_key(tmp_path / "a" / "supernode.key")


# ---------------------------------------------------------------------------- plan
def _plan(tmp_path: Path, **changes):
    for force in ("cheshire", "cumbria"):
        (tmp_path / force / "store").mkdir(parents=True)
        (tmp_path / force / "master.key").write_bytes(b"k" * 32)
    options = dict(
        superlink_host="national.example",
        port=9443,
        tls_dir="/etc/anprfed/tls",
        store=f"{tmp_path}/{{force}}/store",
        key_file=f"{tmp_path}/{{force}}/master.key",
        run_config=parse_run_config('num-server-rounds=5 study-id="nw 2025" feature-cache=false'),
    )
    options.update(changes)
    return build_plan(["cheshire", "cumbria"], **options)


def test_plan_commands_carry_tls_auth_and_each_force_own_store(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    link = plan.superlink_argv()
    assert link[0] == "flower-superlink" and "--enable-supernode-auth" in link
    assert "--insecure" not in link and "--disable-runtime-dependency-installation" in link
    for flag, value in [
        ("--ssl-ca-certfile", "/etc/anprfed/tls/ca.pem"),
        ("--ssl-certfile", "/etc/anprfed/tls/server.pem"),
        ("--ssl-keyfile", "/etc/anprfed/tls/server.key"),
        ("--host", "0.0.0.0"),
        ("--port", "9443"),
        ("--database", "/var/lib/anprfed/superlink/superlink.db"),
        ("--log-file", "/var/lib/anprfed/superlink/superlink.log"),
    ]:
        assert link[link.index(flag) + 1] == value
    for force in plan.forces:
        node = plan.supernode_argv(force)
        assert node[node.index("--superlink") + 1] == "national.example:9443"
        assert node[node.index("--root-certificates") + 1] == "/etc/anprfed/tls/ca.pem"
        assert node[node.index("--auth-supernode-private-key") + 1] == (
            f"/etc/anprfed/supernode-keys/{force.name}/supernode.key"
        )
        assert "--insecure" not in node
        config = parse_config_args([node[node.index("--node-config") + 1]])  # flwr's parser
        assert config == {
            "store": f"{tmp_path}/{force.name}/store",
            "key-file": f"{tmp_path}/{force.name}/master.key",
        }
        resolved = resolve_node_store(config)  # what the force's ClientApp does with it
        assert resolved.store == tmp_path / force.name / "store"
        assert plan.register_argv(force) == [
            "flwr", "supernode", "register",
            f"/etc/anprfed/supernode-keys/{force.name}/supernode.pub",
            "anprfed-national", "--name", force.name,
        ]  # fmt: skip


def test_plan_run_config_and_connection_parse_as_flower_reads_them(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    run = plan.run_argv()
    assert run[:4] == ["flwr", "run", ".", "anprfed-national"] and run[-1] == "--stream"
    overrides = parse_config_args([run[run.index("--run-config") + 1]])
    assert overrides == {
        "min-available-nodes": 2,
        "min-replies": 2,
        "num-server-rounds": 5,
        "study-id": "nw 2025",
        "feature-cache": False,
    }
    FlowerSettings.from_run_config(overrides)
    toml = tomllib.loads(plan.flwr_config_toml())
    assert toml["superlink"]["default"] == "anprfed-national"
    connection = parse_superlink_connection(toml["superlink"]["anprfed-national"], "x")
    assert connection.address == "national.example:9443"
    assert connection.root_certificates == "/etc/anprfed/tls/ca.pem"
    assert connection.insecure is False


def test_rendered_plan_is_the_argv_lists_as_shell(tmp_path: Path) -> None:
    plan = _plan(tmp_path, supernode_home="/var/lib/anprfed/{force}/flwr-home")
    lines = plan.render().splitlines()
    joined = "\n".join(lines)
    register = shlex.join(plan.register_argv(plan.forces[0])) + " --format json | "
    assert any(line.startswith(register) for line in lines)
    assert shlex.join(plan.run_argv()) in lines
    for force in plan.forces:
        continued = next(
            i for i, line in enumerate(lines) if line.endswith("\\") and force.flwr_home in line
        )
        words = shlex.split(lines[continued][:-1] + lines[continued + 1])
        at = words.index("flower-supernode")
        assert dict(w.split("=", 1) for w in words[:at]) == plan.supernode_env(force)
        assert words[at:] == plan.supernode_argv(force)
    assert "ca.key" in joined and "never" in joined  # the CA key is never copied to a host
    assert json.loads(json.dumps(plan.as_dict()))["supernodes"]["cumbria"]["argv"] == (
        plan.supernode_argv(plan.force("cumbria"))
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"run_config": {"num-server-rounds": 0}}, "num-server-rounds"),
        ({"store": "/srv/store"}, "must contain {force}"),
        ({"store": "relative/{force}"}, "absolute path"),
        ({"store": '/srv/"{force}"'}, "double quote"),
        ({"port": 70000}, "1..65535"),
        ({"superlink_host": "0.0.0.0"}, "bind-all"),
        ({"connection": "bad name"}, "--connection"),
        ({"supernode_port_base": 65535}, "room for one port"),
    ],
)
def test_plan_refuses_inputs_that_would_not_work(
    tmp_path: Path, changes: dict, message: str
) -> None:
    with pytest.raises((PlanError, CertificateError), match=message):
        _plan(tmp_path, **changes)


def test_run_config_text_is_checked_against_the_settings() -> None:
    with pytest.raises(PlanError, match="unknown run-config key 'num-rounds'"):
        parse_run_config("num-rounds=3")
    with pytest.raises(PlanError, match="expected int"):
        parse_run_config('num-server-rounds="three"')
    assert parse_run_config("") == {}


def test_several_supernodes_on_one_host_get_their_own_runtime_ports(tmp_path: Path) -> None:
    plan = _plan(tmp_path, superlink_host="127.0.0.1", supernode_port_base=9200)
    assert plan.listen_host == "127.0.0.1"
    ports = [a[a.index("--port") + 1] for a in map(plan.supernode_argv, plan.forces)]
    assert ports == ["9200", "9201"]


# ---------------------------------------------------------------------------- CLI
def test_cli_certs_node_keys_and_plan(tmp_path: Path) -> None:
    done = runner.invoke(app, ["certs", str(tmp_path / "tls"), "--host", "localhost"])
    assert done.exit_code == 0, done.output
    assert "server certificate for localhost" in done.output
    again = runner.invoke(app, ["certs", str(tmp_path / "tls"), "--host", "localhost"])
    assert again.exit_code == 2 and "already exists" in again.output
    bad = runner.invoke(app, ["certs", str(tmp_path / "x"), "--host", "0.0.0.0"])
    assert bad.exit_code == 2 and "bind-all" in bad.output

    keys = runner.invoke(app, ["node-keys", str(tmp_path / "keys"), "--forces", "a,b"])
    assert keys.exit_code == 0, keys.output
    fingerprint = load_public_key(tmp_path / "keys" / "a" / "supernode.pub").fingerprint
    assert fingerprint in keys.output.replace("\n", "")

    text = runner.invoke(app, ["plan", "--forces", "a,b", "--superlink-host", "n.example"])
    assert text.exit_code == 0, text.output
    assert text.output.count("flower-supernode --root-certificates") == 2
    assert "flower-superlink --ssl-ca-certfile" in text.output
    as_json = runner.invoke(app, ["plan", "--forces", "a", "--format", "json"])
    assert json.loads(as_json.output)["run"][:2] == ["flwr", "run"]
    wrong = runner.invoke(app, ["plan", "--forces", "a", "--run-config", "nope=1"])
    assert wrong.exit_code == 2 and "unknown run-config key 'nope'" in wrong.output


def test_plan_keeps_superlink_state_private_and_records_node_ids(tmp_path: Path) -> None:
    """Issue 15 (operator): superlink.db was created 0644; the node id printed once at
    registration was needed to revoke a force; the operator's FLWR_HOME was hard-coded."""
    plan = build_plan(["cheshire", "cumbria"], operator_home="/srv/ops/flwr")
    text = plan.render()
    superlink_at = text.index("flower-superlink ")
    assert text.index("umask 077") < superlink_at
    assert text.index(f"mkdir -p -m 0700 {plan.state_dir}") < superlink_at
    assert 'export FLWR_HOME="${FLWR_HOME:-/srv/ops/flwr}"' in text
    assert "$HOME/.flwr-anprfed" not in text
    for force in ("cheshire", "cumbria"):
        assert (
            f"--name {force} --format json | anprfed deploy record-node {force} --register" in text
        )
    with pytest.raises(PlanError, match="operator-home"):
        build_plan(["cheshire"], operator_home="relative; rm -rf /")


def test_node_register_records_and_returns_node_ids(tmp_path: Path) -> None:
    deploy_app = app
    register = tmp_path / "node-register.json"
    out = 'Registering...\n{"success": true, "node-id": 8812}\n'
    result = CliRunner().invoke(
        deploy_app, ["record-node", "cheshire", "--register", str(register)], input=out
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(register.stat().st_mode) == 0o600
    result = CliRunner().invoke(deploy_app, ["node-id", "cheshire", "--register", str(register)])
    assert result.exit_code == 0 and result.stdout.strip() == "8812"
    bad = CliRunner().invoke(
        deploy_app, ["record-node", "cumbria", "--register", str(register)], input="error"
    )
    assert bad.exit_code == 2 and "no node id" in bad.output
    missing = CliRunner().invoke(deploy_app, ["node-id", "cumbria", "--register", str(register)])
    assert missing.exit_code == 2
