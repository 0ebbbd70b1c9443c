"""A small random Llama with the embedded model's tokenizer: a second, different base model for tests."""

from __future__ import annotations

from pathlib import Path

from seal_lab.model.base import prepare_model
from seal_lab.settings import ModelSettings


def tiny_llama(directory: Path, tokenizer_dir: Path | None = None, seed: int = 0) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer_dir is None:  # the converted embedded model's folder holds its tokenizer
        tokenizer_dir = Path(prepare_model(ModelSettings()))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def tiny_stack_env(directory: Path) -> dict[str, str]:
    """The environment that puts a LocalStack (or `seal-lab up`) on a fresh tiny Llama in `directory`: the
    mechanics tests (faults, resume, CLI, up/down, rounds) run the real services on it in seconds."""
    return {
        "SEAL_MODEL_NAME": tiny_llama(directory),
        "SEAL_MODEL_DEVICE": "cpu",
        "SEAL_MODEL_DTYPE": "float32",
        "SEAL_MODEL_TORCH_THREADS": "1",
    }
