from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServiceInfo(_message.Message):
    __slots__ = ("service", "version", "model_name", "model_fingerprint", "device", "dtype", "formats", "limits", "backend", "runtime", "max_group_size")
    class RuntimeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    MAX_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    service: str
    version: str
    model_name: str
    model_fingerprint: str
    device: str
    dtype: str
    formats: _containers.RepeatedScalarFieldContainer[str]
    limits: DirectiveLimits
    backend: str
    runtime: _containers.ScalarMap[str, str]
    max_group_size: int
    def __init__(self, service: _Optional[str] = ..., version: _Optional[str] = ..., model_name: _Optional[str] = ..., model_fingerprint: _Optional[str] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., formats: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[DirectiveLimits, _Mapping]] = ..., backend: _Optional[str] = ..., runtime: _Optional[_Mapping[str, str]] = ..., max_group_size: _Optional[int] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Directive(_message.Message):
    __slots__ = ("epochs", "learning_rate", "lora_rank", "lora_alpha", "batch_size", "max_length", "steps", "tokens")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LORA_RANK_FIELD_NUMBER: _ClassVar[int]
    LORA_ALPHA_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    epochs: int
    learning_rate: float
    lora_rank: int
    lora_alpha: int
    batch_size: int
    max_length: int
    steps: int
    tokens: int
    def __init__(self, epochs: _Optional[int] = ..., learning_rate: _Optional[float] = ..., lora_rank: _Optional[int] = ..., lora_alpha: _Optional[int] = ..., batch_size: _Optional[int] = ..., max_length: _Optional[int] = ..., steps: _Optional[int] = ..., tokens: _Optional[int] = ...) -> None: ...

class DirectiveLimits(_message.Message):
    __slots__ = ("min_epochs", "max_epochs", "min_learning_rate", "max_learning_rate", "min_lora_rank", "max_lora_rank", "min_lora_alpha", "max_lora_alpha", "min_batch_size", "max_batch_size", "min_max_length", "max_max_length", "default_directive", "min_steps", "max_steps", "min_tokens", "max_tokens")
    MIN_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MIN_LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MIN_LORA_RANK_FIELD_NUMBER: _ClassVar[int]
    MAX_LORA_RANK_FIELD_NUMBER: _ClassVar[int]
    MIN_LORA_ALPHA_FIELD_NUMBER: _ClassVar[int]
    MAX_LORA_ALPHA_FIELD_NUMBER: _ClassVar[int]
    MIN_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    MIN_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MIN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    min_epochs: int
    max_epochs: int
    min_learning_rate: float
    max_learning_rate: float
    min_lora_rank: int
    max_lora_rank: int
    min_lora_alpha: int
    max_lora_alpha: int
    min_batch_size: int
    max_batch_size: int
    min_max_length: int
    max_max_length: int
    default_directive: Directive
    min_steps: int
    max_steps: int
    min_tokens: int
    max_tokens: int
    def __init__(self, min_epochs: _Optional[int] = ..., max_epochs: _Optional[int] = ..., min_learning_rate: _Optional[float] = ..., max_learning_rate: _Optional[float] = ..., min_lora_rank: _Optional[int] = ..., max_lora_rank: _Optional[int] = ..., min_lora_alpha: _Optional[int] = ..., max_lora_alpha: _Optional[int] = ..., min_batch_size: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., min_max_length: _Optional[int] = ..., max_max_length: _Optional[int] = ..., default_directive: _Optional[_Union[Directive, _Mapping]] = ..., min_steps: _Optional[int] = ..., max_steps: _Optional[int] = ..., min_tokens: _Optional[int] = ..., max_tokens: _Optional[int] = ...) -> None: ...
