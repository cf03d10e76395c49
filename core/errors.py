"""Exception hierarchy. Every failure a person can meet has a named class ending in
``Error`` and a message that says what to do about it."""
from __future__ import annotations


class TrustlogError(Exception):
    """Base of every error trustlog raises on purpose."""


class EncodingError(TrustlogError):
    """Bytes that are not a well-formed, canonical trustlog object."""


class EventTooLargeError(EncodingError):
    """An envelope larger than the configured maximum."""


class KeyMaterialError(TrustlogError):
    """A key that cannot be used: unknown type, bad encoding, too weak."""


class UnsupportedKeyTypeError(KeyMaterialError):
    """A key type trustlog does not know. Never treated as 'no signature needed'."""


class InvalidKeyError(KeyMaterialError):
    """Key material that does not parse for its declared type."""


class BadPassphraseError(KeyMaterialError):
    """A private key file that the given passphrase does not open."""


class SignatureError(TrustlogError):
    """A signature that does not verify."""


class StateError(TrustlogError):
    """A rule of the trust model was broken; carries the rejection reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class LogError(TrustlogError):
    """The append-only log cannot be read or written."""


class LogCorruptionError(LogError):
    """A record in the middle of the log is damaged: never skipped silently."""

    def __init__(self, segment: str, offset: int, detail: str) -> None:
        super().__init__(
            f"log corruption in segment {segment} at byte {offset}: {detail}. "
            "The log is not trusted past this point; restore the segment from a replica "
            "or backup, or run `trustlog log verify` for a full report."
        )
        self.segment = segment
        self.offset = offset
        self.detail = detail


class InputError(TrustlogError):
    """Bad input from a user: missing file, malformed JSON, wrong field."""
