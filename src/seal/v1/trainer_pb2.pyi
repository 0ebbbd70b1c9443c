from seal.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainRequest(_message.Message):
    __slots__ = ("dataset_key", "directive", "seed", "job_id", "init_adapter_key", "merge_init")
    DATASET_KEY_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    INIT_ADAPTER_KEY_FIELD_NUMBER: _ClassVar[int]
    MERGE_INIT_FIELD_NUMBER: _ClassVar[int]
    dataset_key: str
    directive: _common_pb2.Directive
    seed: int
    job_id: str
    init_adapter_key: str
    merge_init: bool
    def __init__(self, dataset_key: _Optional[str] = ..., directive: _Optional[_Union[_common_pb2.Directive, _Mapping]] = ..., seed: _Optional[int] = ..., job_id: _Optional[str] = ..., init_adapter_key: _Optional[str] = ..., merge_init: _Optional[bool] = ...) -> None: ...

class TrainProgress(_message.Message):
    __slots__ = ("step", "total_steps", "epoch", "loss", "waiting_for")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    epoch: int
    loss: float
    waiting_for: str
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., epoch: _Optional[int] = ..., loss: _Optional[float] = ..., waiting_for: _Optional[str] = ...) -> None: ...

class TrainMetrics(_message.Message):
    __slots__ = ("step_loss", "tokens", "seconds", "tokens_per_second", "steps", "trainable_parameters", "group_size")
    STEP_LOSS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    step_loss: _containers.RepeatedScalarFieldContainer[float]
    tokens: int
    seconds: float
    tokens_per_second: float
    steps: int
    trainable_parameters: int
    group_size: int
    def __init__(self, step_loss: _Optional[_Iterable[float]] = ..., tokens: _Optional[int] = ..., seconds: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., steps: _Optional[int] = ..., trainable_parameters: _Optional[int] = ..., group_size: _Optional[int] = ...) -> None: ...

class TrainResult(_message.Message):
    __slots__ = ("adapter_key", "metrics", "reused")
    ADAPTER_KEY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    adapter_key: str
    metrics: TrainMetrics
    reused: bool
    def __init__(self, adapter_key: _Optional[str] = ..., metrics: _Optional[_Union[TrainMetrics, _Mapping]] = ..., reused: _Optional[bool] = ...) -> None: ...

class TrainEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: TrainProgress
    result: TrainResult
    def __init__(self, progress: _Optional[_Union[TrainProgress, _Mapping]] = ..., result: _Optional[_Union[TrainResult, _Mapping]] = ...) -> None: ...
