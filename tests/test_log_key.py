"""The log's checkpoint key kept apart from the log (TRUSTLOG_LOG_KEY), with a
passphrase, and the warning when it sits inside the log directory."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from logtools import history
from trustlog.cli.main import main as cli
from trustlog.core.errors import BadPassphraseError, InputError, LogError
from trustlog.ingest import transparency
from trustlog.ingest.keystore import KeyStore
from trustlog.ingest.logcheck import verify_log
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.transparency import LOG_KEY_ENV, LOG_PASSPHRASE_ENV, load_public_key


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transparency, "_warned", set())
    monkeypatch.delenv(LOG_KEY_ENV, raising=False)
    monkeypatch.delenv(LOG_PASSPHRASE_ENV, raising=False)


def _ingest(d: Path, n: int = 5) -> None:
    with TrustLog(d, snapshot_every=None) as tl:
        tl.ingest_batch([(e.to_bytes(), None) for e in history(3)[:n]])


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trustlog.log"]


def test_a_log_key_inside_the_log_directory_is_warned_about_once(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "log"
    _ingest(d)
    _ingest(d)
    (w,) = _warnings(caplog)
    assert "sits inside the log directory" in w and LOG_KEY_ENV in w and "\n" not in w


def test_log_key_kept_elsewhere_with_a_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    keys, d = tmp_path / "vault", tmp_path / "log"
    KeyStore(keys).generate("logkey", "ed25519", passphrase="correct horse")
    monkeypatch.setenv(LOG_KEY_ENV, str(keys / "logkey.key"))
    monkeypatch.setenv(LOG_PASSPHRASE_ENV, "correct horse")
    _ingest(d)
    assert not (d / "log.key").exists() and (d / "log.pub").exists()
    assert load_public_key(d / "log.pub") == KeyStore(keys).public("logkey")
    assert _warnings(caplog) == []
    assert verify_log(d, KeyStore(keys).public("logkey")).ok
    _ingest(d)                                     # reopens with the same key
    monkeypatch.setenv(LOG_PASSPHRASE_ENV, "wrong")
    with pytest.raises(BadPassphraseError):
        TrustLog(d)
    monkeypatch.delenv(LOG_PASSPHRASE_ENV)
    monkeypatch.setenv("TRUSTLOG_LOGKEY_PASSPHRASE", "correct horse")   # the per-key variable works too
    TrustLog(d).close()


def test_the_wrong_key_or_no_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "log"
    _ingest(d)
    KeyStore(tmp_path / "vault").generate("other", "ed25519")
    monkeypatch.setenv(LOG_KEY_ENV, str(tmp_path / "vault" / "other.key"))
    with pytest.raises(LogError, match="not the key of this log"):
        TrustLog(d)
    monkeypatch.setenv(LOG_KEY_ENV, str(tmp_path / "vault" / "missing.key"))
    with pytest.raises(InputError, match="no such key file"):
        TrustLog(d)
    assert cli(["checkpoint", "create", "--log", str(d)]) == 2   # a writer needs the key
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and LOG_KEY_ENV in err
    assert cli(["checkpoint", "latest", "--log", str(d), "--json"]) == 0   # a reader needs only log.pub
    capsys.readouterr()
    KeyStore(tmp_path / "vault").generate("ecdsa", "ecdsa-p256")
    monkeypatch.setenv(LOG_KEY_ENV, str(tmp_path / "vault" / "ecdsa.key"))
    with pytest.raises(InputError, match="Ed25519"):
        TrustLog(tmp_path / "new")


def test_moving_the_key_out_of_an_existing_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    d, vault = tmp_path / "log", tmp_path / "vault"
    _ingest(d)
    vault.mkdir(mode=0o700)
    shutil.copy2(d / "log.key", vault / "log.key")
    monkeypatch.setenv(LOG_KEY_ENV, str(vault / "log.key"))
    caplog.clear()
    TrustLog(d).close()
    (w,) = _warnings(caplog)
    assert "copy of the log key" in w                    # still there: delete it
    (d / "log.key").unlink()
    monkeypatch.setattr(transparency, "_warned", set())
    caplog.clear()
    _ingest(d)
    assert _warnings(caplog) == [] and verify_log(d).ok
    monkeypatch.setenv(LOG_KEY_ENV, str(d / "log.pub").replace(".pub", ".key"))
    shutil.copy2(vault / "log.key", d / "log.key")       # pointed back inside the log directory
    monkeypatch.setattr(transparency, "_warned", set())
    TrustLog(d).close()
    assert any("sits inside the log directory" in w for w in _warnings(caplog))
