"""The shared token and TLS settings, and the start-up refusal: a service bound beyond loopback without a token
exits with code 2 and one line, before anything loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from seal_lab.security import (
    AuthSettings,
    Security,
    TlsSettings,
    is_loopback,
    security_from_environment,
    startup_problem,
)
from seal_lab.serve.host import run_grpc_service
from seal_lab.settings import GrpcServiceSettings, LoggingSettings
from tests.tls_fixtures import TOKEN, make_certificates

ROOT = Path(__file__).resolve().parents[2]
SECURITY_VARIABLES = (
    "SEAL_AUTH_TOKEN",
    "SEAL_AUTH_TOKEN_FILE",
    "SEAL_TLS_CERT_FILE",
    "SEAL_TLS_KEY_FILE",
    "SEAL_TLS_CA_FILE",
    "SEAL_TLS_CLIENT_AUTH",
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in SECURITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_token_comes_from_the_environment_or_a_file_never_both(clean_env, tmp_path):
    assert AuthSettings().token is None
    clean_env.setenv("SEAL_AUTH_TOKEN", TOKEN)
    settings = AuthSettings()
    assert settings.token.get_secret_value() == TOKEN and TOKEN not in repr(settings)
    (tmp_path / "token").write_text(TOKEN + "\n")
    clean_env.setenv("SEAL_AUTH_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(ValidationError, match="SEAL_AUTH_TOKEN or SEAL_AUTH_TOKEN_FILE, not both"):
        AuthSettings()
    clean_env.delenv("SEAL_AUTH_TOKEN")
    assert AuthSettings().token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("changeme", "example value"),
        ("short-token", "shorter than 16"),
        ("0123456789abcdef 0123", "printable ASCII without spaces"),
        ("0123456789abcdéf0123", "printable ASCII without spaces"),
    ],
)
def test_weak_or_unsendable_tokens_are_refused_without_echoing_them(clean_env, token, problem):
    clean_env.setenv("SEAL_AUTH_TOKEN", token)
    with pytest.raises(ValidationError, match=problem) as caught:
        AuthSettings()
    assert token not in str(caught.value)


def test_tls_files_are_checked_at_start_up(clean_env, tmp_path):
    certs = make_certificates(tmp_path)
    tls = TlsSettings(cert_file=certs.cert, key_file=certs.key, ca_file=certs.ca, client_auth=True)
    assert tls.enabled and tls.serves and tls.pem.cert.startswith(b"-----BEGIN CERTIFICATE")
    assert not TlsSettings().enabled
    assert not TlsSettings(ca_file=certs.ca).serves
    with pytest.raises(ValidationError, match="SEAL_TLS_CERT_FILE and SEAL_TLS_KEY_FILE together"):
        TlsSettings(cert_file=certs.cert)
    with pytest.raises(ValidationError, match="SEAL_TLS_CLIENT_AUTH=true needs SEAL_TLS_CA_FILE"):
        TlsSettings(cert_file=certs.cert, key_file=certs.key, client_auth=True)
    with pytest.raises(ValidationError, match="key values mismatch"):
        TlsSettings(cert_file=certs.cert, key_file=certs.client_key)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ValidationError, match=r"SEAL_TLS_CA_FILE '.*junk\.pem': .*no certificate"):
        TlsSettings(ca_file=tmp_path / "junk.pem")
    with pytest.raises(ValidationError, match="No such file"):
        TlsSettings(ca_file=tmp_path / "missing.pem")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("gpu-box", False),
        ("localhost.example.org", False),
    ],
)
def test_loopback_is_127_slash_8_ipv6_one_and_localhost_only(host, loopback):
    assert is_loopback(host) is loopback


def test_only_loopback_may_serve_without_a_token(tmp_path):
    assert startup_problem("127.0.0.1", Security()) is None
    problem = startup_problem("0.0.0.0", Security())
    assert problem is not None and "SEAL_AUTH_TOKEN" in problem and "\n" not in problem
    assert startup_problem("0.0.0.0", Security(token=SecretStr(TOKEN))) is None
    certs = make_certificates(tmp_path)
    client_only = Security(token=SecretStr(TOKEN), tls=TlsSettings(ca_file=certs.ca))
    assert "SEAL_TLS_CERT_FILE" in startup_problem("0.0.0.0", client_only)


def test_a_grpc_service_on_every_interface_without_a_token_exits_2_before_building_anything(capsys):
    def build():
        raise AssertionError("built the servicers")

    settings = GrpcServiceSettings(host="0.0.0.0", port=1)
    with pytest.raises(SystemExit) as exited:
        run_grpc_service("trainer", settings, LoggingSettings(), build, Security())
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("seal-trainer: refusing to listen on 0.0.0.0")


def test_bad_security_settings_end_the_process_with_one_line_each(clean_env, tmp_path, capsys):
    clean_env.setenv("SEAL_AUTH_TOKEN", "changeme")
    clean_env.setenv("SEAL_TLS_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(SystemExit) as exited:
        security_from_environment("seal-lab")
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("seal-lab: ") for line in lines)
    assert "example value" in lines[0] and "SEAL_TLS_KEY_FILE together" in lines[1]
    assert "changeme" not in lines[0]


@pytest.mark.parametrize(
    ("module", "host_variable"),
    [("services.coordinator", "SEAL_COORDINATOR_HOST"), ("services.trainer", "SEAL_TRAINER_HOST")],
)
def test_the_entry_points_refuse_every_interface_without_a_token(module, host_variable):
    env = {name: value for name, value in os.environ.items() if name not in SECURITY_VARIABLES}
    env |= {host_variable: "0.0.0.0", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", module], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "refusing to listen on 0.0.0.0 without a token" in done.stderr
