from seal.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Question(_message.Message):
    __slots__ = ("question_id", "question", "answers", "topic")
    QUESTION_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    question_id: str
    question: str
    answers: _containers.RepeatedScalarFieldContainer[str]
    topic: str
    def __init__(self, question_id: _Optional[str] = ..., question: _Optional[str] = ..., answers: _Optional[_Iterable[str]] = ..., topic: _Optional[str] = ...) -> None: ...

class QuestionSet(_message.Message):
    __slots__ = ("set_id", "questions", "adapter_keys")
    SET_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_KEYS_FIELD_NUMBER: _ClassVar[int]
    set_id: str
    questions: _containers.RepeatedCompositeFieldContainer[Question]
    adapter_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, set_id: _Optional[str] = ..., questions: _Optional[_Iterable[_Union[Question, _Mapping]]] = ..., adapter_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("questions", "adapter_keys", "max_new_tokens", "run_id", "sets")
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_KEYS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    questions: _containers.RepeatedCompositeFieldContainer[Question]
    adapter_keys: _containers.RepeatedScalarFieldContainer[str]
    max_new_tokens: int
    run_id: str
    sets: _containers.RepeatedCompositeFieldContainer[QuestionSet]
    def __init__(self, questions: _Optional[_Iterable[_Union[Question, _Mapping]]] = ..., adapter_keys: _Optional[_Iterable[str]] = ..., max_new_tokens: _Optional[int] = ..., run_id: _Optional[str] = ..., sets: _Optional[_Iterable[_Union[QuestionSet, _Mapping]]] = ...) -> None: ...

class Scores(_message.Message):
    __slots__ = ("exact_match", "f1", "contains", "token_recall", "judge")
    EXACT_MATCH_FIELD_NUMBER: _ClassVar[int]
    F1_FIELD_NUMBER: _ClassVar[int]
    CONTAINS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_RECALL_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    exact_match: float
    f1: float
    contains: float
    token_recall: float
    judge: float
    def __init__(self, exact_match: _Optional[float] = ..., f1: _Optional[float] = ..., contains: _Optional[float] = ..., token_recall: _Optional[float] = ..., judge: _Optional[float] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("question_id", "answer", "scores", "gold_logprob")
    QUESTION_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    GOLD_LOGPROB_FIELD_NUMBER: _ClassVar[int]
    question_id: str
    answer: str
    scores: Scores
    gold_logprob: float
    def __init__(self, question_id: _Optional[str] = ..., answer: _Optional[str] = ..., scores: _Optional[_Union[Scores, _Mapping]] = ..., gold_logprob: _Optional[float] = ...) -> None: ...

class AdapterEvaluation(_message.Message):
    __slots__ = ("adapter_key", "mean", "answers", "cached", "mean_gold_logprob")
    ADAPTER_KEY_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    MEAN_GOLD_LOGPROB_FIELD_NUMBER: _ClassVar[int]
    adapter_key: str
    mean: Scores
    answers: _containers.RepeatedCompositeFieldContainer[Answer]
    cached: bool
    mean_gold_logprob: float
    def __init__(self, adapter_key: _Optional[str] = ..., mean: _Optional[_Union[Scores, _Mapping]] = ..., answers: _Optional[_Iterable[_Union[Answer, _Mapping]]] = ..., cached: _Optional[bool] = ..., mean_gold_logprob: _Optional[float] = ...) -> None: ...

class QuestionSetEvaluation(_message.Message):
    __slots__ = ("set_id", "evaluations")
    SET_ID_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    set_id: str
    evaluations: _containers.RepeatedCompositeFieldContainer[AdapterEvaluation]
    def __init__(self, set_id: _Optional[str] = ..., evaluations: _Optional[_Iterable[_Union[AdapterEvaluation, _Mapping]]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("evaluations", "model_fingerprint", "seconds", "sets")
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    evaluations: _containers.RepeatedCompositeFieldContainer[AdapterEvaluation]
    model_fingerprint: str
    seconds: float
    sets: _containers.RepeatedCompositeFieldContainer[QuestionSetEvaluation]
    def __init__(self, evaluations: _Optional[_Iterable[_Union[AdapterEvaluation, _Mapping]]] = ..., model_fingerprint: _Optional[str] = ..., seconds: _Optional[float] = ..., sets: _Optional[_Iterable[_Union[QuestionSetEvaluation, _Mapping]]] = ...) -> None: ...
