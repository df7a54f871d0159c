"""User text in messages: shortened in one place, escaped for terminals, odd file names quoted."""

from __future__ import annotations

from reconciler.model.text import EXCERPT_CHARS, MESSAGE_CHARS, printable, quote, quote_path
from reconciler.validate.findings import Code, Finding, Severity


def test_a_long_value_is_quoted_as_its_start_and_how_much_was_left_out() -> None:
    shown = quote("h" * 5_000_000)

    assert shown == repr("h" * EXCERPT_CHARS) + f"… ({5_000_000 - EXCERPT_CHARS} more characters)"
    assert quote("reviews") == "'reviews'"
    assert len(quote(list(range(1_000_000)))) < 100


def test_control_characters_are_escaped_and_printable_text_is_left_alone() -> None:
    assert printable("a\x1b[2Jb\nc\r\x00") == "a\\u001b[2Jb\\nc\\r\\u0000"
    assert printable("café → ok") == "café → ok"


def test_a_file_name_is_quoted_only_when_it_holds_odd_characters() -> None:
    assert quote_path("mesh/café.yaml") == "mesh/café.yaml"
    assert quote_path("mesh/a\nb.yaml") == '"mesh/a\\nb.yaml"'
    assert quote_path('a"b\\c.yaml') == '"a\\"b\\\\c.yaml"'
    assert quote_path("bad\udcff.yaml") == '"bad\\udcff.yaml"'  # an undecodable byte of a Linux file name


def test_a_finding_that_echoes_a_value_without_quoting_it_is_still_bounded() -> None:
    host = "a" * 5_000_000
    finding = Finding(
        code=Code.SCHEMA,
        severity=Severity.ERROR,
        message=f"host {host} not found",
        file="vs.yaml",
        line=3,
        path=f'spec["{host}"]',
        name=host,
        hint=f"add {host}",
    )

    assert all(len(text) < MESSAGE_CHARS + 50 for text in (finding.message, finding.path, finding.name, finding.hint))
    assert len(finding.format()) < 5 * MESSAGE_CHARS
