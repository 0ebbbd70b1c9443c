from seal.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DirectiveSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTIVE_SOURCE_UNSPECIFIED: _ClassVar[DirectiveSource]
    DIRECTIVE_SOURCE_PARSED: _ClassVar[DirectiveSource]
    DIRECTIVE_SOURCE_CLAMPED: _ClassVar[DirectiveSource]
    DIRECTIVE_SOURCE_PARTIAL: _ClassVar[DirectiveSource]
    DIRECTIVE_SOURCE_DEFAULT: _ClassVar[DirectiveSource]
DIRECTIVE_SOURCE_UNSPECIFIED: DirectiveSource
DIRECTIVE_SOURCE_PARSED: DirectiveSource
DIRECTIVE_SOURCE_CLAMPED: DirectiveSource
DIRECTIVE_SOURCE_PARTIAL: DirectiveSource
DIRECTIVE_SOURCE_DEFAULT: DirectiveSource

class Passage(_message.Message):
    __slots__ = ("passage_id", "title", "context")
    PASSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    passage_id: str
    title: str
    context: str
    def __init__(self, passage_id: _Optional[str] = ..., title: _Optional[str] = ..., context: _Optional[str] = ...) -> None: ...

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_p", "max_new_tokens", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_new_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("passage", "format", "num_samples", "sampling", "policy_adapter_key", "limits", "include_passage", "run_id", "strategy")
    PASSAGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    POLICY_ADAPTER_KEY_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PASSAGE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    passage: Passage
    format: str
    num_samples: int
    sampling: SamplingParams
    policy_adapter_key: str
    limits: _common_pb2.DirectiveLimits
    include_passage: bool
    run_id: str
    strategy: str
    def __init__(self, passage: _Optional[_Union[Passage, _Mapping]] = ..., format: _Optional[str] = ..., num_samples: _Optional[int] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., policy_adapter_key: _Optional[str] = ..., limits: _Optional[_Union[_common_pb2.DirectiveLimits, _Mapping]] = ..., include_passage: _Optional[bool] = ..., run_id: _Optional[str] = ..., strategy: _Optional[str] = ...) -> None: ...

class SelfEdit(_message.Message):
    __slots__ = ("dataset_key", "format", "sample_index", "directive", "directive_source", "directive_notes", "num_texts", "preview", "generated_tokens")
    DATASET_KEY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVE_NOTES_FIELD_NUMBER: _ClassVar[int]
    NUM_TEXTS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    dataset_key: str
    format: str
    sample_index: int
    directive: _common_pb2.Directive
    directive_source: DirectiveSource
    directive_notes: _containers.RepeatedScalarFieldContainer[str]
    num_texts: int
    preview: str
    generated_tokens: int
    def __init__(self, dataset_key: _Optional[str] = ..., format: _Optional[str] = ..., sample_index: _Optional[int] = ..., directive: _Optional[_Union[_common_pb2.Directive, _Mapping]] = ..., directive_source: _Optional[_Union[DirectiveSource, str]] = ..., directive_notes: _Optional[_Iterable[str]] = ..., num_texts: _Optional[int] = ..., preview: _Optional[str] = ..., generated_tokens: _Optional[int] = ...) -> None: ...

class ImportRequest(_message.Message):
    __slots__ = ("passage", "format", "outputs", "limits", "include_passage", "source", "run_id", "strategy")
    PASSAGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PASSAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    passage: Passage
    format: str
    outputs: _containers.RepeatedScalarFieldContainer[str]
    limits: _common_pb2.DirectiveLimits
    include_passage: bool
    source: str
    run_id: str
    strategy: str
    def __init__(self, passage: _Optional[_Union[Passage, _Mapping]] = ..., format: _Optional[str] = ..., outputs: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[_common_pb2.DirectiveLimits, _Mapping]] = ..., include_passage: _Optional[bool] = ..., source: _Optional[str] = ..., run_id: _Optional[str] = ..., strategy: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("self_edits", "model_fingerprint", "seconds")
    SELF_EDITS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    self_edits: _containers.RepeatedCompositeFieldContainer[SelfEdit]
    model_fingerprint: str
    seconds: float
    def __init__(self, self_edits: _Optional[_Iterable[_Union[SelfEdit, _Mapping]]] = ..., model_fingerprint: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class ImportResponse(_message.Message):
    __slots__ = ("self_edits", "seconds")
    SELF_EDITS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    self_edits: _containers.RepeatedCompositeFieldContainer[SelfEdit]
    seconds: float
    def __init__(self, self_edits: _Optional[_Iterable[_Union[SelfEdit, _Mapping]]] = ..., seconds: _Optional[float] = ...) -> None: ...
