"""Settings: env prefixes, required secrets, list parsing (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from seal_lab.settings import ModelSettings, StoreSettings
from services.coordinator.settings import CoordinatorSettings
from services.generator.settings import GeneratorSettings


def test_s3_store_without_credentials_is_refused(monkeypatch):
    monkeypatch.delenv("SEAL_STORE_S3_ACCESS_KEY", raising=False)
    monkeypatch.delenv("SEAL_STORE_S3_SECRET_KEY", raising=False)
    monkeypatch.setenv("SEAL_STORE_KIND", "s3")
    with pytest.raises(ValidationError, match="SEAL_STORE_S3_ACCESS_KEY"):
        StoreSettings()


def test_secrets_have_no_default_and_do_not_print(monkeypatch):
    assert GeneratorSettings().openai_api_key is None
    monkeypatch.setenv("SEAL_GENERATOR_OPENAI_API_KEY", "sk-secret")
    settings = GeneratorSettings()
    assert settings.openai_api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(settings)


def test_trainer_addresses_accept_a_comma_list(monkeypatch):
    monkeypatch.setenv("SEAL_COORDINATOR_TRAINER_ADDRESSES", "gpu-a:50052, gpu-b:50052")
    assert CoordinatorSettings().trainer_addresses == ["gpu-a:50052", "gpu-b:50052"]


def test_each_service_reads_its_own_prefix(monkeypatch):
    monkeypatch.setenv("SEAL_GENERATOR_PORT", "6001")
    monkeypatch.setenv("SEAL_MODEL_NAME", "distilgpt2")
    assert GeneratorSettings().port == 6001
    assert ModelSettings().name == "distilgpt2"


@pytest.fixture
def no_store_env(monkeypatch):
    for name in (
        "SEAL_STORE_KIND",
        "SEAL_STORE_S3_ACCESS_KEY",
        "SEAL_STORE_S3_SECRET_KEY",
        "SEAL_STORE_S3_ACCESS_KEY_FILE",
        "SEAL_STORE_S3_SECRET_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_s3_keys_can_come_from_secret_files(no_store_env, tmp_path):
    (tmp_path / "access").write_text("seal-service\n")
    (tmp_path / "secret").write_text("0f3c9a7e5b1d2c4e6a8b0d1f3e5c7a9b\n")  # `echo` adds the newline
    no_store_env.setenv("SEAL_STORE_KIND", "s3")
    no_store_env.setenv("SEAL_STORE_S3_ACCESS_KEY_FILE", str(tmp_path / "access"))
    no_store_env.setenv("SEAL_STORE_S3_SECRET_KEY_FILE", str(tmp_path / "secret"))
    settings = StoreSettings()
    assert settings.s3_access_key.get_secret_value() == "seal-service"
    assert settings.s3_secret_key.get_secret_value() == "0f3c9a7e5b1d2c4e6a8b0d1f3e5c7a9b"
    assert "0f3c9a7e" not in repr(settings)


def test_a_secret_and_its_file_together_are_refused(no_store_env, tmp_path):
    (tmp_path / "secret").write_text("0f3c9a7e5b1d2c4e6a8b0d1f3e5c7a9b")
    no_store_env.setenv("SEAL_STORE_S3_SECRET_KEY", "a1b2c3d4e5f6a7b8")
    no_store_env.setenv("SEAL_STORE_S3_SECRET_KEY_FILE", str(tmp_path / "secret"))
    with pytest.raises(
        ValidationError, match="SEAL_STORE_S3_SECRET_KEY or SEAL_STORE_S3_SECRET_KEY_FILE, not both"
    ):
        StoreSettings()


def test_an_unreadable_secret_file_names_the_variable_not_the_contents(no_store_env, tmp_path):
    no_store_env.setenv("SEAL_STORE_S3_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match="SEAL_STORE_S3_SECRET_KEY_FILE: cannot read"):
        StoreSettings()
    (tmp_path / "binary").write_bytes(b"\xff\xfehunter2-but-longer")
    no_store_env.setenv("SEAL_STORE_S3_SECRET_KEY_FILE", str(tmp_path / "binary"))
    with pytest.raises(ValidationError, match="SEAL_STORE_S3_SECRET_KEY_FILE") as caught:
        StoreSettings()
    assert "hunter2" not in str(caught.value)
    (tmp_path / "empty").write_text("\n")
    no_store_env.setenv("SEAL_STORE_S3_SECRET_KEY_FILE", str(tmp_path / "empty"))
    with pytest.raises(ValidationError, match="is empty"):
        StoreSettings()


@pytest.mark.parametrize("secret", ["change-this-secret-before-use", "minioadmin", "MinioAdmin", "password"])
def test_example_secrets_are_refused_with_the_way_to_make_one(no_store_env, secret):
    with pytest.raises(ValidationError, match="openssl rand -hex 24") as caught:
        StoreSettings(kind="s3", s3_access_key="seal", s3_secret_key=secret)
    assert "example value" in str(caught.value)


def test_short_secrets_are_refused_and_not_echoed(no_store_env):
    with pytest.raises(ValidationError, match="shorter than 8") as caught:
        StoreSettings(kind="s3", s3_access_key="seal", s3_secret_key="x7#q2")
    assert "x7#q2" not in str(caught.value)


def test_s3_timeouts_and_retries_are_bounded_settings(no_store_env):
    settings = StoreSettings()
    assert (settings.s3_connect_timeout_seconds, settings.s3_read_timeout_seconds) == (5.0, 60.0)
    assert settings.s3_max_retries == 2
    no_store_env.setenv("SEAL_STORE_S3_READ_TIMEOUT_SECONDS", "0")
    with pytest.raises(ValidationError, match="s3_read_timeout_seconds"):
        StoreSettings()
    no_store_env.setenv("SEAL_STORE_S3_READ_TIMEOUT_SECONDS", "1.5")
    no_store_env.setenv("SEAL_STORE_S3_MAX_RETRIES", "-1")
    with pytest.raises(ValidationError, match="s3_max_retries"):
        StoreSettings()


@pytest.fixture
def no_ca_env(monkeypatch):
    monkeypatch.delenv("SEAL_STORE_S3_CA_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    return monkeypatch


@pytest.fixture
def ca_pem(tmp_path):
    trustme = pytest.importorskip("trustme")
    path = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def test_s3_ca_file_is_read_from_its_variable_before_openssls(no_ca_env, ca_pem, tmp_path):
    assert StoreSettings().s3_ca_file is None
    other = tmp_path / "other.pem"
    other.write_bytes(ca_pem.read_bytes())
    no_ca_env.setenv("SSL_CERT_FILE", str(other))  # OpenSSL's convention: the fallback
    assert StoreSettings().s3_ca_file == other
    no_ca_env.setenv("SEAL_STORE_S3_CA_FILE", str(ca_pem))
    assert StoreSettings().s3_ca_file == ca_pem
    assert StoreSettings(s3_ca_file=other).s3_ca_file == other  # by name, as tests and callers pass it


def test_s3_ca_file_ignores_an_unprefixed_name(no_ca_env, ca_pem):
    # The alias bypasses env_prefix: only the two full names count, not S3_CA_FILE or the field's own name.
    no_ca_env.setenv("S3_CA_FILE", str(ca_pem))
    no_ca_env.setenv("s3_ca_file", str(ca_pem))
    assert StoreSettings().s3_ca_file is None


@pytest.mark.parametrize(
    "content", [None, b"", b"not a certificate\n-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n"]
)
def test_a_bad_s3_ca_file_is_named_in_one_line_without_its_contents(no_ca_env, tmp_path, content):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    no_ca_env.setenv("SEAL_STORE_S3_CA_FILE", str(path))
    assert StoreSettings().s3_ca_file == path  # a local store never reads it, so it is not checked
    keys = {"s3_access_key": "seal-lab-svc", "s3_secret_key": "s" * 32}
    with pytest.raises(ValidationError) as caught:
        StoreSettings(kind="s3", **keys)
    (error,) = caught.value.errors()
    message = error["msg"]
    assert "SEAL_STORE_S3_CA_FILE" in message and str(path) in message and "\n" not in message
    assert "c2VjcmV0" not in str(caught.value) and "not a certificate" not in str(caught.value)
