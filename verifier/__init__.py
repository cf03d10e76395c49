"""Batch verdicts and signature checks. Importing this package registers the selected
backend's batch check as the default for the layers below (``trustlog.core.crypto_hook``)."""
from trustlog.core.crypto_hook import register_default_crypto

from .batch import default_crypto as _default_crypto

register_default_crypto(_default_crypto)
