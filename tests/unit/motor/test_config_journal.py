"""Unit tests for the ``journal`` config section (issue 7): defaults, validation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from netcortex.config import JournalConfig, load_config
from netcortex.errors import ConfigError

TOKEN = "0123456789abcdef0123456789abcdef01234567"


def write(tmp_path: Path, text: str) -> Path:
    """Write ``text`` as a config file and return its path."""
    path = tmp_path / "netcortex.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class TestJournalConfig:
    def test_defaults(self) -> None:
        """Off by default; high severity and above, every handler, recoveries, a day's age."""
        journal = load_config(None, {}).journal
        assert journal == JournalConfig()
        assert journal.enabled is False
        assert journal.min_severity == "high"
        assert journal.handlers == []
        assert journal.max_age_seconds == 86_400.0
        assert journal.rate_per_second == 5.0
        assert journal.include_recoveries is True
        assert journal.verify_tls is True
        assert journal.api_base_url is None

    def test_enabled_needs_url_and_token(self, tmp_path: Path) -> None:
        """Enabling the journal without a URL or token names both missing keys."""
        with pytest.raises(ConfigError, match=r"journal\.netbox_url and journal\.netbox_token"):
            load_config(write(tmp_path, "journal: {enabled: true}"), environ={})
        with pytest.raises(ConfigError, match=r"needs journal\.netbox_token"):
            load_config(
                write(tmp_path, "journal: {enabled: true, netbox_url: 'https://nb'}"), environ={}
            )

    def test_full_section_from_file_and_env(self, tmp_path: Path) -> None:
        """Every key reads from the file; NETCORTEX_JOURNAL__* overrides it."""
        path = write(
            tmp_path,
            f"""
journal:
  enabled: true
  netbox_url: https://netbox.example.com
  netbox_token: {TOKEN}
  verify_tls: false
  min_severity: warn
  handlers: [link_down, bgp_drop]
  max_age_seconds: 3600
  rate_per_second: 2.5
  timeout_seconds: 5
  max_backoff_seconds: 120
  lease_seconds: 30
  api_base_url: https://netcortex.example.com/
  include_recoveries: false
""",
        )
        journal = load_config(path, environ={"NETCORTEX_JOURNAL__RATE_PER_SECOND": "9"}).journal
        assert journal.enabled
        assert journal.netbox_token is not None
        assert journal.netbox_token.get_secret_value() == TOKEN
        assert (journal.verify_tls, journal.min_severity) == (False, "warn")
        assert journal.handlers == ["link_down", "bgp_drop"]
        assert journal.rate_per_second == 9.0
        assert journal.api_base_url == "https://netcortex.example.com"
        assert journal.include_recoveries is False

    def test_handlers_from_env_as_commas(self) -> None:
        """``NETCORTEX_JOURNAL__HANDLERS=a,b`` is a list."""
        env = {"NETCORTEX_JOURNAL__HANDLERS": "link_down,device_down"}
        assert load_config(None, env).journal.handlers == ["link_down", "device_down"]

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("journal: {min_severity: urgent}", r"journal\.min_severity"),
            ("journal: {rate_per_second: 0}", r"journal\.rate_per_second"),
            ("journal: {max_age_seconds: -1}", r"journal\.max_age_seconds"),
            ("journal: {lease_seconds: .inf}", r"journal\.lease_seconds"),
            ("journal: {handlers: ['link down']}", r"journal\.handlers: .*single tokens"),
            ("journal: {api_base_url: 'ftp://x'}", r"journal\.api_base_url: .*http"),
            ("journal: {netbox_url: 'netbox.example.com'}", r"journal\.netbox_url must be"),
            ("journal: {bogus: 1}", r"journal\.bogus: unknown key"),
            ("journal: {lease_seconds: 30, timeout_seconds: 10}", r"lease_seconds must be"),
        ],
    )
    def test_bad_values_name_the_key(self, tmp_path: Path, text: str, fragment: str) -> None:
        """Each invalid value is reported under its own ``journal.<key>``."""
        with pytest.raises(ConfigError, match=fragment):
            load_config(write(tmp_path, text), environ={})

    def test_token_is_redacted(self, tmp_path: Path) -> None:
        """The token never shows in repr, JSON or an error message."""
        path = write(
            tmp_path,
            f"journal: {{enabled: true, netbox_url: 'https://nb', netbox_token: {TOKEN}}}",
        )
        config = load_config(path, environ={})
        assert TOKEN not in repr(config)
        assert TOKEN not in config.model_dump_json()
        bad = write(tmp_path, f"journal: {{enabled: true, netbox_token: {TOKEN}}}")
        with pytest.raises(ConfigError) as info:
            load_config(bad, environ={})
        assert TOKEN not in str(info.value)
