"""The command line. Importing it registers the verifier's default signature check."""
import trustlog.verifier  # noqa: F401  (registers trustlog.core.crypto_hook's default)
