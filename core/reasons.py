"""Named reasons: why an event was rejected at ingest, and verdict codes for images.

Both are plain strings so they travel unchanged through JSON, Kafka and reports.
"""
from __future__ import annotations

from enum import Enum


class Reject(str, Enum):
    """Why the fold refused an event. The event is kept in the rejects log with this."""

    MALFORMED = "MALFORMED"                      # not a canonical envelope / event
    TOO_LARGE = "TOO_LARGE"                      # over the configured size limit
    UNKNOWN_REPOSITORY = "UNKNOWN_REPOSITORY"    # event for a repository never created
    REPOSITORY_EXISTS = "REPOSITORY_EXISTS"      # RepoCreated twice
    VERSION_ROLLBACK = "VERSION_ROLLBACK"        # version <= current of its scope (tag, role, root, key)
    VERSION_SKIP = "VERSION_SKIP"                # repository not at version 1; TUF root skips one
    UNKNOWN_KEY = "UNKNOWN_KEY"                  # no signature by a key of the signing role
    BAD_SIGNATURE = "BAD_SIGNATURE"              # a signature by a role key does not verify
    THRESHOLD_NOT_MET = "THRESHOLD_NOT_MET"      # too few distinct valid keys
    KEY_COMPROMISED = "KEY_COMPROMISED"          # needed a key reported compromised
    NOT_AUTHORISED = "NOT_AUTHORISED"            # signed by a role below the one the change needs
    ROOT_OLD_THRESHOLD = "ROOT_OLD_THRESHOLD"    # rotation lacks the old root threshold
    ROOT_NEW_THRESHOLD = "ROOT_NEW_THRESHOLD"    # rotation lacks the new root threshold
    UNKNOWN_ROLE = "UNKNOWN_ROLE"                # role does not exist (or was removed)
    INVALID_ROLE = "INVALID_ROLE"                # bad role name or operation on a role
    INVALID_KEYS = "INVALID_KEYS"                # unusable keys or threshold
    OUTSIDE_PATTERNS = "OUTSIDE_PATTERNS"        # delegated signer signed a tag it may not
    UNKNOWN_TAG = "UNKNOWN_TAG"                  # TagDeleted for a tag that is not there
    PIN_MISMATCH = "PIN_MISMATCH"                # first root does not match the pin file
    INVALID_FIELD = "INVALID_FIELD"              # a field out of range (digest, size, times)
    WRONG_PARTITION = "WRONG_PARTITION"          # Kafka: the repository maps to another partition
    METADATA_CHANGED = "METADATA_CHANGED"        # imported metadata changed without a new version
    SNAPSHOT_MISMATCH = "SNAPSHOT_MISMATCH"      # imported metadata not the file the snapshot names
    METADATA_EXPIRED = "METADATA_EXPIRED"        # an imported timestamp / snapshot expired when read


class Code(str, Enum):
    """The verdict for one image request."""

    VALID = "VALID"                              # trusted: signed by a threshold of a role that holds the tag
    UNKNOWN_REPOSITORY = "UNKNOWN_REPOSITORY"    # no such repository in the log
    UNKNOWN_TAG = "UNKNOWN_TAG"                  # the repository has no signed tag of that name
    TAG_DELETED = "TAG_DELETED"                  # the tag was signed, then deleted
    DIGEST_MISMATCH = "DIGEST_MISMATCH"          # the tag is signed for another digest than the request's
    BAD_SIGNATURE = "BAD_SIGNATURE"              # a signature the verdict depends on does not verify
    THRESHOLD_NOT_MET = "THRESHOLD_NOT_MET"      # too few distinct trusted keys signed the tag
    KEY_COMPROMISED = "KEY_COMPROMISED"          # signed at or after its key was reported compromised
    DELEGATION_COMPROMISED = "DELEGATION_COMPROMISED"  # a delegation above it was made by a compromised key
    ROLE_REMOVED = "ROLE_REMOVED"                # the signer role that signed it was removed
    OUTSIDE_PATTERNS = "OUTSIDE_PATTERNS"        # the role's current paths no longer cover the tag
    EXPIRED = "EXPIRED"                          # the signature or a role's metadata expired (reference time)
    MALFORMED_REQUEST = "MALFORMED_REQUEST"      # the request is not {repo, tag[, digest]}
    ERROR = "ERROR"                              # internal error: rejects, never passes

    @property
    def ok(self) -> bool:
        return self is Code.VALID
