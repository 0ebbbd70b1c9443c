"""The torch half: the base model, LoRA adapters trained and applied, alone and in groups.

Only this package imports torch, transformers or peft, and only inside functions
(tests/unit/test_architecture.py): the light half runs without the `model` extra."""
