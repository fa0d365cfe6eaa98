"""Attributes: the vocabulary (name → type), the typed bag, and read recording."""

from __future__ import annotations

from policy.attributes.bag import AttributeBag, LazyReferences, Presence, Read, RecordingBag, Reference, references
from policy.attributes.types import ValueType, conforms, type_name
from policy.attributes.vocabulary import (
    STANDARD_ATTRIBUTES,
    VOLATILE_ATTRIBUTES,
    Vocabulary,
    VocabularyError,
    standard_vocabulary,
)

__all__ = [
    "AttributeBag",
    "LazyReferences",
    "Presence",
    "Read",
    "RecordingBag",
    "Reference",
    "references",
    "ValueType",
    "conforms",
    "type_name",
    "STANDARD_ATTRIBUTES",
    "VOLATILE_ATTRIBUTES",
    "Vocabulary",
    "VocabularyError",
    "standard_vocabulary",
]
