"""The HTML audit report proves its source: its provenance block is the log's signed
checkpoint, every event it cites carries an inclusion proof, and `trustlog proof verify
REPORT.html --log-key log.pub` checks the report alone, failing on any edit."""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from trustlog.cli.audit_evidence import extract_evidence
from trustlog.cli.main import main as cli
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.synthetic import SyntheticRegistry
from trustlog.ingest.transparency import load_public_key

REF = 1_900_000_000
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("report")
    reg = SyntheticRegistry(repos=24, tags=240, ref_time=REF)
    with TrustLog(d / "log", checkpoint_every=100, snapshot_every=None) as tl:
        tl.ingest((e.to_bytes(), None) for e in reg.phase1())
        since = tl.clock.last + 1
        tl.ingest((e.to_bytes(), None) for e in reg.phase2(since))
    html = d / "report.html"
    assert cli(["audit", "--log", str(d / "log"), "--key", reg.incidents.compromised_keyid, "--since", str(since),
                "--ref-time", str(REF), "--html", str(html), "--json"]) == 0
    return d, reg, html


def test_provenance_block_is_the_logs_checkpoint(report) -> None:
    d, reg, html = report
    page = html.read_text()
    evidence, shown = extract_evidence(page)
    key = load_public_key(d / "log" / "log.pub")
    with TrustLog(d / "log") as tl:
        _signed, cp = tl.tree.latest()
        assert cp.tree_size == tl.log.next_offset  # the report covers the whole log
        want = {"tree_size": str(cp.tree_size), "root_hash": cp.root_hash.hex(), "log_key_id": key.keyid,
                "origin": cp.origin}
        for field, value in want.items():
            assert shown[field] == value and str(evidence["provenance"][field]) == value, field
        for e in evidence["events"]:
            assert base64.b64decode(e["record"]) == tl.log.read(e["offset"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", shown["generated_at"])
    assert shown["tool"].startswith("trustlog ") and "backend" in shown["tool"]
    assert evidence["proven"] == evidence["cited"] > 0


def test_report_layout(report) -> None:
    _d, reg, html = report
    page = html.read_text()
    visible = page.split('<script type="application/json"')[0]
    # leads with what already happened, then what would change
    assert visible.index("Tags that already lost trust") < visible.index("Current verdicts that would change")
    assert visible.index("Provenance") < visible.index("Tags that already lost trust")
    assert "KEY_COMPROMISED" in visible
    # repositories one per table row, not a paragraph
    for repo in reg.incidents.compromised_repos:
        assert f"<td>{repo}</td>" in visible
    # human times, no raw epoch numbers on the page
    assert not re.search(r"\b\d{16,}\b", visible), re.findall(r"\b\d{16,}\b", visible)[:3]
    assert "<script>" not in page and "src=" not in page


def _verify(page: str, tmp: Path, key: Path) -> int:
    f = tmp / "r.html"
    f.write_text(page)
    return cli(["proof", "verify", str(f), "--log-key", str(key)])


def test_proof_verify_checks_the_report_alone(report, tmp_path: Path, capsys) -> None:
    d, _reg, html = report
    alone = tmp_path / "alone"
    alone.mkdir()
    key = alone / "log.pub"
    shutil.copy(d / "log" / "log.pub", key)       # only the report and the log's public key
    page = html.read_text()
    assert _verify(page, alone, key) == 0
    assert "report checks out" in capsys.readouterr().out

    evidence, shown = extract_evidence(page)
    digest = next(e["cited"]["digest"] for e in evidence["events"] if e["cited"].get("digest"))
    # a visible cell edited: the row no longer matches its proven record
    visible, script = page.split('<script type="application/json"')
    tampered = visible.replace(f'data-f="digest">{digest}<', f'data-f="digest">sha256:{"00" * 32}<', 1)
    assert tampered != visible and _verify(tampered + '<script type="application/json"' + script, alone, key) == 1
    # the visible provenance edited
    root = shown["root_hash"]
    tampered = visible.replace(f'data-field="root_hash">{root}<', f'data-field="root_hash">{"ab" * 32}<')
    assert _verify(tampered + '<script type="application/json"' + script, alone, key) == 1
    # an embedded record swapped for another one
    recs = [e["record"] for e in evidence["events"][:2]]
    assert _verify(page.replace(recs[0], recs[1], 1), alone, key) == 1
    # another log's key: the checkpoint signature fails
    other = tmp_path / "other"
    assert cli(["log", "init", "--log", str(other)]) == 0
    assert _verify(page, alone, other / "log.pub") == 1
    capsys.readouterr()
    # not a report at all: bad input
    assert _verify("<html></html>", alone, key) == 2


def test_screenshot_script(tmp_path: Path) -> None:
    """The page is seen, not only parsed: headless Chromium renders it to a PNG."""
    out = tmp_path / "report.png"
    # the script installs Debian's chromium when it is missing and may (root); else it says so
    r = subprocess.run([str(ROOT / "scripts" / "screenshot-report"), str(out), "0.02"], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0 and "chromium is missing" in r.stderr:
        from conftest import require_or_skip

        require_or_skip("headless Chromium (Debian package chromium)", RuntimeError(r.stderr.strip()))
    assert r.returncode == 0, r.stderr[-2000:]
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert "report checks out" in r.stdout
