"""Untrusted strings in every renderer: terminal tables and lines, HTML, error messages.

Finding 9 of issue 8: delegation paths were printed with rich markup on, so ``[/]``
crashed `inspect` and `state --at` with a traceback and ``[conceal]*[/conceal]`` hid a
catch-all pattern on a colour terminal. The fold's grammar now keeps such names out of
the log, but every renderer must be safe on its own (a name from a tampered snapshot, a
file name, a `--at` value, an error message): the property below throws markup, HTML,
ANSI escapes, control and bidi characters at each one.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustlog.cli.audit_html import render_html
from trustlog.cli.main import main
from trustlog.cli.render import print_repo
from trustlog.cli.safe import markup, plain
from trustlog.cli.ui import UI
from trustlog.services.audit import AuditEvent, AuditReport, FallenGrant, VerdictChange

HOSTILE = [
    "[/]", "[conceal]*[/conceal]", "[bold]x", "[link=https://evil.example]x[/link]", "<script>alert(1)</script>",
    "\x1b[31mred\x1b[0m", "\x1b]8;;https://evil.example\x07x\x1b]8;;\x07", "line1\nline2", "over\rwrite",
    "\u202eevil", "a\u200bb", "tab\there", ":warning:", "back\\slash", "\x00nul", "\x9bC1",
    "&amp;<img src=x onerror=alert(1)>",
]
hostile = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40),
                    st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=4).map("".join))


def _no_raw_controls(s: str) -> bool:
    return all(c.isprintable() or c == "\n" for c in s)


@given(hostile)
def test_plain_leaves_nothing_unprintable(s: str) -> None:
    p = plain(s)
    assert all(c.isprintable() for c in p)
    if s.isprintable() and "\\" not in s:
        assert p == s


@settings(max_examples=60, deadline=None)
@given(a=hostile, b=hostile)
def test_terminal_renderers_show_untrusted_text_literally(a: str, b: str) -> None:
    import io

    from rich.console import Console

    ui = UI()
    for force in (False, True):          # a pipe, and a colour terminal
        buf = io.StringIO()
        con = Console(file=buf, force_terminal=force, color_system="truecolor" if force else None,
                      markup=False, emoji=False, highlight=False, soft_wrap=True, width=400)
        ui.out = ui.err = con
        ui.table(a, ["role", b], [[a, b], [b, 1]])
        ui.say("[bold]{}[/bold] at {}", a, b)
        ui.info(a)
        print_repo(ui, [{"role": a, "threshold": 1, "keys": [b], "paths": [a, b], "expires": 0,
                         "set_at_offset": 0}], {b: 1}, [{"tag": a, "digest": b, "role": a, "offset": 1}], b)
        out = buf.getvalue()
        # every untrusted string is there, made plain (a table may fold a long cell: compare without layout)
        flat = "".join(out.split())
        for s in (a, b):
            assert "".join(plain(s).split()) in flat
        if not force:
            assert "\x1b" not in out and _no_raw_controls(out)


def test_markup_template_escapes_its_arguments() -> None:
    t = markup("[bold]{}[/bold] {}", "[conceal]*[/conceal]", "[/]")
    assert t.plain == "[conceal]*[/conceal] [/]"
    assert [str(s.style) for s in t.spans] == ["bold"]


@settings(max_examples=40, deadline=None)
@given(a=hostile, b=hostile)
def test_html_report_escapes_every_field(a: str, b: str) -> None:
    ev = AuditEvent(1, 10, a, b, 1, "signed", True, role=a, tag=b, digest=a, keys=[b])
    report = AuditReport(keyid=a, since=5, ref_time=0, state_version=1, signed=[ev], granted=[ev], delegated=[ev],
                         fallen_grants=[FallenGrant(a, 1, b, 1, 10, [a], None, True)],
                         verdict_changes=[VerdictChange(a, b, a, b, a, b, 1)], repos=[a, b],
                         already_reported={a: 3})
    html = render_html(report, log_dir=b)
    for bad in ("<script", "<img", "\x1b", "\u202e", "\r"):
        assert bad not in html
    assert _no_raw_controls(html)


# -- the command line, end to end -------------------------------------------------------

REPO = "registry.example.com/team/app"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRUSTLOG_PASSPHRASE", "pw")
    base = ["--log", str(tmp_path / "log"), "--keys", str(tmp_path / "keys")]

    def run(*argv: str) -> int:
        n = 2 if argv[0] in ("key", "repo", "signer") else 1
        return main([*argv[:n], *base, *argv[n:]])

    for name in ("root", "targets"):
        assert run("key", "generate", name) == 0
    assert run("repo", "create", REPO, "--root-key", "root", "--targets-key", "targets", "--init") == 0
    return run


@pytest.mark.parametrize("evil", ["v1[/]", "[conceal]*[/conceal]", "v1\x1b[2J", "v1\n"])
def test_cli_rejections_and_errors_are_one_plain_line(evil: str, cli, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    # a tag the fold refuses: exit 1, the reason on one line, the name escaped
    assert cli("sign", REPO, evil, DIGEST, "--sign-with", "targets") == 1
    err = capsys.readouterr().err
    assert "INVALID_FIELD" in err and "Traceback" not in err and "\x1b" not in err
    assert len(err.strip().splitlines()) == 1
    # a delegation whose pattern is the payload: refused by the grammar
    assert cli("signer", "add", REPO, "mallory", "--key", "targets", "--paths", evil, "--sign-with", "targets") == 1
    err = capsys.readouterr().err
    assert "INVALID_ROLE" in err and len(err.strip().splitlines()) == 1 and "\x1b" not in err
    # inputs that are not names at all: exit 2, one line
    for argv in (("inspect", evil), ("state", "--at", evil, REPO), ("state", "--at", "1", evil)):
        assert cli(*argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("trustlog: error:") and len(err.strip().splitlines()) == 1 and "\x1b" not in err


def test_inspect_and_state_show_patterns_literally(cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("key", "generate", "alice") == 0
    assert cli("signer", "add", REPO, "alice", "--key", "alice", "--paths", "[!v]*", "v[0-9]*", "--sign-with",
               "targets") == 0
    capsys.readouterr()
    for argv in (("inspect", REPO), ("state", "--at", "2", REPO)):
        assert cli(*argv) == 0
        out = capsys.readouterr().out
        assert "[!v]*" in out and "v[0-9]*" in out
    assert cli("inspect", "--json", REPO) == 0
    roles = json.loads(capsys.readouterr().out)["roles"]
    assert [r["paths"] for r in roles if r["role"] == "targets/alice"] == [["[!v]*", "v[0-9]*"]]
