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
