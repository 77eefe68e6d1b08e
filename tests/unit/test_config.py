"""Unit tests for ``netcortex.config``: file → environment → defaults, errors, secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netcortex.config import AUTH_PROTOCOLS, PRIV_PROTOCOLS, Config, load_config
from netcortex.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "netcortex.yaml"

V3_USER = {
    "user": "netcortex",
    "engine_id": "0x80001f880472312d6c6162",
    "auth_protocol": "SHA-256",
    "auth_key": "netcortex-auth-01",
    "priv_protocol": "AES",
    "priv_key": "netcortex-priv-01",
}


def write(tmp_path: Path, text: str) -> Path:
    """Write ``text`` as a config file and return its path."""
    path = tmp_path / "netcortex.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class TestLoadConfig:
    def test_defaults_without_file(self) -> None:
        """No file and no environment gives the embedded default tree."""
        config = load_config(None, {})
        assert config.bus.backend == "memory"
        assert config.store.backend == "sqlite"
        assert (config.trap.host, config.trap.port) == ("127.0.0.1", 1162)
        assert config.source == "<defaults>"

    def test_shipped_example_is_valid_and_names_every_issue_key(self) -> None:
        """examples/netcortex.yaml validates and spells out every key the issue requires."""
        config = load_config(EXAMPLE, {})
        assert config.bus.backend == "memory"
        assert str(config.store.sqlite_path) == "var/netcortex.db"
        assert (config.trap.host, config.trap.port) == ("127.0.0.1", 1162)
        assert [c.get_secret_value() for c in config.trap.communities] == ["public"]
        (user,) = config.trap.v3_users
        assert (user.user, user.engine_id, user.auth_protocol, user.priv_protocol) == (
            "netcortex",
            "0x80001f880472312d6c6162",
            "SHA-256",
            "AES",
        )
        text = EXAMPLE.read_text(encoding="utf-8")
        for key in (
            "backend",
            "nats_url",
            "sqlite_path",
            "host",
            "port",
            "communities",
            "v3_users",
            "engine_id",
            "auth_protocol",
            "auth_key",
            "priv_protocol",
            "priv_key",
            "allowed_sources",
        ):
            assert f"{key}:" in text, key

    def test_file_values_override_defaults(self, tmp_path: Path) -> None:
        """Keys in the file replace defaults; untouched keys keep their defaults."""
        path = write(tmp_path, "trap:\n  port: 2162\nbus:\n  backend: nats\n")
        config = load_config(path, {})
        assert config.trap.port == 2162
        assert config.trap.host == "127.0.0.1"
        assert config.bus.backend == "nats"
        assert config.source == str(path)

    def test_env_overrides_file(self, tmp_path: Path) -> None:
        """NETCORTEX_TRAP__PORT beats the file's trap.port and is coerced to an int."""
        path = write(tmp_path, "trap:\n  port: 2162\n")
        config = load_config(path, {"NETCORTEX_TRAP__PORT": "3162", "UNRELATED": "x"})
        assert config.trap.port == 3162

    def test_env_list_as_yaml_flow_or_commas(self) -> None:
        """A list setting comes from the environment as '[a, b]' or as 'a,b'."""
        flow = load_config(None, {"NETCORTEX_TRAP__COMMUNITIES": "[public, 12345678]"})
        commas = load_config(None, {"NETCORTEX_TRAP__ALLOWED_SOURCES": "127.0.0.1, 10.0.0.0/8"})
        assert [c.get_secret_value() for c in flow.trap.communities] == ["public", "12345678"]
        assert commas.trap.allowed_sources == ["127.0.0.1", "10.0.0.0/8"]

    def test_env_scalars_keep_their_text(self) -> None:
        """An all-digit env value for a string key stays a string; 'no' is a boolean."""
        config = load_config(
            None, {"NETCORTEX_BUS__NAMESPACE": "123", "NETCORTEX_TRAP__ENABLED": "no"}
        )
        assert config.bus.namespace == "123"
        assert config.trap.enabled is False

    def test_env_v3_users_as_flow_mapping(self) -> None:
        """A whole v3 user list can be given in one environment variable."""
        env = {
            "NETCORTEX_TRAP__V3_USERS": "[{user: a, engine_id: '0x80001f880472312d6c6162', "
            "auth_protocol: sha, auth_key: 12345678}]"
        }
        (user,) = load_config(None, env).trap.v3_users
        assert (user.user, user.auth_protocol, user.level) == ("a", "SHA", "authNoPriv")

    def test_unquoted_hex_engine_id_from_yaml(self, tmp_path: Path) -> None:
        """An engine ID copied unquoted from snmptrapd.conf (a YAML int) still loads."""
        path = write(
            tmp_path,
            "trap:\n  v3_users:\n    - user: u\n      engine_id: 0x80001f880472312d6c6162\n",
        )
        (user,) = load_config(path, {}).trap.v3_users
        assert user.engine_id == "0x80001f880472312d6c6162"


class TestConfigErrors:
    def test_infinite_or_nan_durations_are_refused(self, tmp_path: Path) -> None:
        """``.inf`` and ``.nan`` are configuration errors for float settings, not run-time
        crashes (a JetStream ``ack_wait`` of infinity cannot become nanoseconds)."""
        path = write(
            tmp_path,
            "bus:\n  ack_wait: .inf\n  stream_max_age: .nan\nstore:\n  flush_interval: .inf\n",
        )
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        keys = {key for _, key, _ in info.value.problems}
        assert keys == {"bus.ack_wait", "bus.stream_max_age", "store.flush_interval"}

    def test_all_problems_reported_at_once_with_key_and_file(self, tmp_path: Path) -> None:
        """Every invalid key is in one ConfigError, each naming its key and the file."""
        path = write(
            tmp_path,
            "bus:\n  backend: kafka\ntrap:\n  port: 70000\n  allowed_sources: [not-an-ip]\n"
            "store:\n  batch_size: 0\n",
        )
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        problems = {key: (origin, msg) for origin, key, msg in info.value.problems}
        assert set(problems) == {
            "bus.backend",
            "trap.port",
            "trap.allowed_sources",
            "store.batch_size",
        }
        assert all(origin == str(path) for origin, _ in problems.values())
        text = str(info.value)
        assert "4 configuration problem(s)" in text
        assert f"{path}: trap.port:" in text
        assert "not-an-ip" in text

    def test_unknown_key_is_an_error(self, tmp_path: Path) -> None:
        """A misspelt key is reported as 'unknown key' rather than silently ignored."""
        path = write(tmp_path, "trap:\n  prot: 1162\nlogging: {}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        assert sorted((k, m) for _, k, m in info.value.problems) == [
            ("logging", "unknown key"),
            ("trap.prot", "unknown key"),
        ]

    def test_env_problem_names_the_variable(self, tmp_path: Path) -> None:
        """A bad override is blamed on its environment variable, not on the file."""
        path = write(tmp_path, "trap:\n  port: 2162\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, {"NETCORTEX_TRAP__PORT": "not-a-port"})
        ((origin, key, _),) = info.value.problems
        assert (origin, key) == ("env NETCORTEX_TRAP__PORT", "trap.port")

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a ConfigError naming the file."""
        path = tmp_path / "nope.yaml"
        with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config file"):
            load_config(path, {})

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [("trap: [unclosed\n", "not valid YAML"), ("- just\n- a list\n", "mapping of sections")],
    )
    def test_not_a_config_document(self, tmp_path: Path, text: str, fragment: str) -> None:
        """Broken YAML or a non-mapping document is rejected with the file's name."""
        path = write(tmp_path, text)
        with pytest.raises(ConfigError, match=fragment) as info:
            load_config(path, {})
        assert str(path) in str(info.value)

    @pytest.mark.parametrize(
        ("user", "fragment"),
        [
            ({**V3_USER, "auth_protocol": "SHA-999"}, "unknown auth protocol"),
            ({**V3_USER, "priv_protocol": "3DES-XYZ"}, "unknown priv protocol"),
            ({**V3_USER, "auth_key": "short"}, "at least 8 characters"),
            ({**V3_USER, "engine_id": "0xzz"}, "hex"),
            ({"user": "u", "engine_id": V3_USER["engine_id"], "priv_protocol": "AES",
              "priv_key": "12345678"}, "priv_protocol needs"),
        ],
    )  # fmt: skip
    def test_bad_v3_user(self, user: dict[str, str], fragment: str) -> None:
        """Invalid USM users are rejected with a message that says what is wrong."""
        with pytest.raises(ConfigError, match=fragment) as info:
            load_config(None, {"NETCORTEX_TRAP__V3_USERS": json.dumps([user])})
        assert info.value.problems[0][1].startswith("trap.v3_users.0")


class TestProtocols:
    @pytest.mark.parametrize(
        ("spelling", "canonical"),
        [("MD5", "MD5"), ("md5", "MD5"), ("SHA", "SHA"), ("sha1", "SHA"), ("SHA-224", "SHA-224"),
         ("sha-256", "SHA-256"), ("SHA256", "SHA-256"), ("Sha-384", "SHA-384"),
         ("sha_512", "SHA-512")],
    )  # fmt: skip
    def test_auth_protocol_spellings(self, spelling: str, canonical: str) -> None:
        """Auth protocols are accepted as net-snmp spells them, case-insensitively."""
        user = {**V3_USER, "auth_protocol": spelling}
        config = Config.model_validate({"trap": {"v3_users": [user]}})
        assert config.trap.v3_users[0].auth_protocol == canonical
        assert canonical in AUTH_PROTOCOLS.values()

    @pytest.mark.parametrize(
        ("spelling", "canonical"),
        [("DES", "DES"), ("des", "DES"), ("AES", "AES"), ("aes128", "AES"), ("AES-128", "AES"),
         ("aes-192", "AES-192"), ("AES256", "AES-256"), ("aes-256", "AES-256"),
         ("AES-256-C", "AES-256-C")],
    )  # fmt: skip
    def test_priv_protocol_spellings(self, spelling: str, canonical: str) -> None:
        """Privacy protocols are accepted as net-snmp spells them, case-insensitively."""
        user = {**V3_USER, "priv_protocol": spelling}
        config = Config.model_validate({"trap": {"v3_users": [user]}})
        assert config.trap.v3_users[0].priv_protocol == canonical
        assert canonical in PRIV_PROTOCOLS.values()


class TestSecrets:
    def test_secrets_redacted_in_repr_str_and_json(self) -> None:
        """Communities and USM keys never appear in repr, str or the JSON dump."""
        config = Config.model_validate(
            {"trap": {"communities": ["s3cret-community"], "v3_users": [V3_USER]}}
        )
        for text in (repr(config), str(config), config.model_dump_json(), repr(config.trap)):
            assert "s3cret-community" not in text
            assert "netcortex-auth-01" not in text
            assert "netcortex-priv-01" not in text
        assert config.trap.communities[0].get_secret_value() == "s3cret-community"
        assert config.trap.v3_users[0].auth_key is not None
        assert config.trap.v3_users[0].auth_key.get_secret_value() == "netcortex-auth-01"

    def test_error_message_does_not_echo_secrets(self, tmp_path: Path) -> None:
        """A validation error on a USM user does not print its keys."""
        path = write(
            tmp_path,
            "trap:\n  v3_users:\n    - user: u\n      engine_id: '0x80001f880472312d6c6162'\n"
            "      auth_protocol: SHA-999\n      auth_key: very-secret-key\n",
        )
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        assert "very-secret-key" not in str(info.value)


class TestIssue3Sections:
    def test_inventory_backends_need_their_keys(self, tmp_path: Path) -> None:
        """inventory.backend file needs a path, netbox a URL and a token — named in the error."""
        for text, needle in (
            ("inventory: {backend: file}", "inventory.path"),
            ("inventory: {backend: netbox, netbox_url: 'https://nb'}", "netbox_token"),
        ):
            with pytest.raises(ConfigError, match=needle):
                load_config(write(tmp_path, text), environ={})

    @pytest.mark.parametrize(
        ("inventory", "needle"),
        [
            ("netbox_url: 'netbox.example.com', netbox_token: t0k3n", "http:// or https://"),
            ("netbox_url: 'ftp://user:pw@nb', netbox_token: t0k3n", "http:// or https://"),
            ("netbox_url: 'https://nb', netbox_token: '   '", "netbox_token"),
        ],
    )
    def test_netbox_url_scheme_and_blank_token_refused(
        self, tmp_path: Path, inventory: str, needle: str
    ) -> None:
        """A NetBox URL without http(s) or a blank token is a config error (not a failure at
        start), and the error never echoes the URL's credentials."""
        path = write(tmp_path, f"inventory: {{backend: netbox, {inventory}}}")
        with pytest.raises(ConfigError, match=needle) as info:
            load_config(path, environ={})
        assert "pw@" not in str(info.value)

    def test_dedup_bucket_name_is_checked(self, tmp_path: Path) -> None:
        """A NATS KV bucket name with characters NATS refuses is a config error naming the key."""
        with pytest.raises(ConfigError, match=r"dedup\.bucket"):
            load_config(write(tmp_path, "dedup: {bucket: 'net.cortex dedup'}"), environ={})

    def test_dedup_windows_must_name_builtin_handlers(self, tmp_path: Path) -> None:
        """A typo in dedup.windows (``linkdown``) is refused when the engine is built, naming the
        key and the known ids, instead of silently keeping the default window."""
        from netcortex.app import Engine

        config = load_config(write(tmp_path, "dedup: {windows: {linkdown: 10}}"), environ={})
        with pytest.raises(ConfigError, match=r"dedup\.windows: .*'linkdown'.*link_down"):
            Engine(config)
        ok = load_config(write(tmp_path, "dedup: {windows: {link_down: 10}}"), environ={})
        assert Engine(ok).config.dedup.windows == {"link_down": 10.0}

    def test_netbox_token_is_redacted(self, tmp_path: Path) -> None:
        """The NetBox token is a secret: repr and JSON never show it."""
        path = write(
            tmp_path,
            "inventory: {backend: netbox, netbox_url: 'https://nb', netbox_token: nbt_s3cr3t}",
        )
        config = load_config(path, environ={})
        assert config.inventory.netbox_token is not None
        assert config.inventory.netbox_token.get_secret_value() == "nbt_s3cr3t"
        assert "nbt_s3cr3t" not in repr(config)
        assert "nbt_s3cr3t" not in config.model_dump_json()

    def test_dedup_window_overrides_from_env(self) -> None:
        """dedup.windows can be overridden from the environment as a YAML mapping."""
        config = load_config(None, environ={"NETCORTEX_DEDUP__WINDOWS": "{link_down: 30}"})
        assert config.dedup.windows == {"link_down": 30.0}

    def test_window_needs_exactly_one_of_end_or_duration(self, tmp_path: Path) -> None:
        """A maintenance window with both or neither of end/duration is refused."""
        for extra in ("", ", end: '2026-12-06T03:00:00Z', duration: 60"):
            text = (
                "maintenance: {windows: [{id: w, scope: device, target: r1,"
                f" start: '2026-12-06T02:00:00Z'{extra}}}]}}"
            )
            with pytest.raises(ConfigError, match="exactly one of end and duration"):
                load_config(write(tmp_path, text), environ={})

    def test_naive_start_is_read_in_the_window_timezone(self, tmp_path: Path) -> None:
        """A naive start is wall-clock time in the window's IANA zone; duration gives the end."""
        text = (
            "maintenance: {windows: [{id: w, scope: site, target: dc-north,"
            " start: '2026-07-05T02:00:00', duration: 3600, timezone: Europe/Amsterdam}]}"
        )
        (window,) = load_config(write(tmp_path, text), environ={}).maintenance.windows
        start, end = window.bounds()
        assert start.utcoffset() is not None
        assert start.isoformat() == "2026-07-05T02:00:00+02:00"
        assert (end - start).total_seconds() == 3600

    def test_unknown_timezone_refused(self, tmp_path: Path) -> None:
        """An unknown IANA zone is a config error naming it."""
        text = (
            "maintenance: {windows: [{id: w, scope: tag, target: core,"
            " start: '2026-07-05T02:00:00', duration: 60, timezone: Mars/Olympus}]}"
        )
        with pytest.raises(ConfigError, match="Mars/Olympus"):
            load_config(write(tmp_path, text), environ={})


class TestIssue4Sections:
    def test_example_sets_every_issue_4_key(self) -> None:
        """The shipped example spells out http.host/port/api_token and the meraki keys."""
        config = load_config(EXAMPLE, {})
        assert (config.http.host, config.http.port) == ("127.0.0.1", 8162)
        assert config.http.api_token is not None
        assert config.meraki.shared_secret is not None
        assert config.meraki.replay_window_seconds == 300
        assert config.meraki.alert_types == {"ids_alerted": "security"}
        text = EXAMPLE.read_text(encoding="utf-8")
        for key in ("api_token", "shared_secret", "replay_window_seconds"):
            assert f"{key}:" in text, key

    def test_defaults_fail_closed(self) -> None:
        """Without a file nothing is configured: the API and the webhooks stay closed."""
        config = load_config(None, {})
        assert config.http.enabled
        assert config.http.host == "127.0.0.1"
        assert config.http.api_token is None
        assert config.meraki.shared_secret is None

    @pytest.mark.parametrize(
        ("text", "needle"),
        [
            ("http: {api_token: short}", r"http\.api_token: must be at least 16"),
            ("http: {port: 70000}", r"http\.port"),
            ("http: {page_size: 500, max_page_size: 100}", "page_size must not exceed"),
            ("meraki: {shared_secret: '  '}", r"meraki\.shared_secret: must not be blank"),
            ("meraki: {replay_window_seconds: -1}", r"meraki\.replay_window_seconds"),
            (
                "meraki: {replay_window_seconds: 600, idempotency_window_seconds: 900}",
                "at least twice replay_window_seconds",
            ),
            ("meraki: {alert_types: {ids_alerted: securty}}", "ids_alerted: unknown event class"),
            (
                "meraki: {alert_type_patterns: [{pattern: '(unclosed', event_class: security}]}",
                "not a regular expression",
            ),
            (
                "meraki: {alert_type_patterns: [{pattern: x, event_class: nope}]}",
                "unknown event class 'nope'",
            ),
        ],
    )
    def test_bad_values_name_the_key(self, tmp_path: Path, text: str, needle: str) -> None:
        """Each bad http/meraki value is a ConfigError naming the key (and the file)."""
        path = write(tmp_path, text)
        with pytest.raises(ConfigError, match=needle) as info:
            load_config(path, environ={})
        assert str(path) in str(info.value)

    def test_secrets_come_from_the_environment_and_stay_redacted(self) -> None:
        """NETCORTEX_HTTP__API_TOKEN / NETCORTEX_MERAKI__SHARED_SECRET set the secrets,
        which never show in repr or str."""
        token, secret = "t" * 24, "s3cret-from-the-vault"
        config = load_config(
            None,
            {"NETCORTEX_HTTP__API_TOKEN": token, "NETCORTEX_MERAKI__SHARED_SECRET": secret},
        )
        assert config.http.api_token is not None
        assert config.http.api_token.get_secret_value() == token
        assert config.meraki.shared_secret is not None
        assert config.meraki.shared_secret.get_secret_value() == secret
        for text in (repr(config), str(config), config.model_dump_json()):
            assert token not in text
            assert secret not in text


class TestTrustedProxies:
    @pytest.mark.parametrize("value", [["127.0.0.1"], ["10.0.0.0/8", "::1"], ["*"], []], ids=str)
    def test_accepted(self, value: list[str]) -> None:
        """Addresses, canonical networks, or '*' alone."""
        config = Config.model_validate({"http": {"trusted_proxies": value}})
        assert config.http.trusted_proxies == value

    @pytest.mark.parametrize(
        ("value", "needle"),
        [
            (["proxy.example.com"], "not an address or CIDR network"),
            (["10.0.0.1/8"], "not an address or CIDR network"),
            (["*", "10.0.0.1"], "give it alone"),
        ],
    )
    def test_refused(self, tmp_path: Path, value: list[str], needle: str) -> None:
        """A name, a network with host bits, or '*' mixed with others is a config error."""
        path = write(tmp_path, f"http: {{trusted_proxies: {json.dumps(value)}}}")
        with pytest.raises(ConfigError, match=rf"http\.trusted_proxies: .*{needle}"):
            load_config(path, environ={})


class TestMaintenanceRecurrenceCost:
    """``maintenance.windows`` whose RRULE the calendar would evaluate slowly (in the
    engine's event loop) are refused when the config is checked, like any other problem."""

    #: (rrule, start, problem key under maintenance.windows.<i>, words in the message)
    ABUSIVE = (
        # INTERVAL/COUNT below 1: the calendar's cheap rule check (INTERVAL=0 hung the engine)
        ("FREQ=DAILY;INTERVAL=0", "2026-02-01T02:00:00Z", "", "INTERVAL=0"),
        ("FREQ=DAILY;COUNT=0", "2026-02-01T02:00:00Z", "", "COUNT=0"),
        ("FREQ=DAILY;COUNT=-1", "2026-02-01T02:00:00Z", "", "COUNT=-1"),
        # recurrence_problems: 17 million past occurrences, sub-hourly, never matching
        ("FREQ=HOURLY", "0001-01-01T00:00:00Z", ".start", "occurrences"),
        ("FREQ=HOURLY;BYMINUTE=0,1,2", "2026-02-01T02:00:00Z", ".rrule", "less than an hour"),
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "2026-02-01T02:00:00Z", ".rrule",
         "ever match|no occurrence"),
        ("FREQ=YEARLY;INTERVAL=50", "2025-01-01T02:00:00Z", ".rrule", "no occurrence"),
    )  # fmt: skip

    def config_file(self, tmp_path: Path) -> Path:
        """A config file: one ordinary weekly window, then one window per abusive rule."""
        lines = [
            "maintenance:",
            "  windows:",
            "    - {id: sundays, scope: site, target: north, start: '2026-01-04T02:00:00',"
            " duration: 3600, rrule: 'FREQ=WEEKLY;BYDAY=SU', timezone: Europe/Amsterdam}",
        ]
        for i, (rrule, start, _, _) in enumerate(self.ABUSIVE):
            lines.append(
                f"    - {{id: bad{i}, scope: device, target: r1, start: '{start}',"
                f" duration: 60, rrule: '{rrule}'}}"
            )
        return write(tmp_path, "\n".join(lines) + "\n")

    @pytest.mark.timeout(30)  # an unguarded INTERVAL=0 would hang: fail instead
    def test_each_abusive_rule_is_a_config_error_naming_its_key(self, tmp_path: Path) -> None:
        """One ConfigError names every abusive window by its key (and the file); the
        ordinary weekly window is not among them."""
        import re
        from datetime import UTC, datetime

        from netcortex.memory.semantic.maintenance import config_windows

        path = self.config_file(tmp_path)
        config = load_config(path, environ={})  # the file itself is well-formed
        with pytest.raises(ConfigError) as info:
            config_windows(
                config.maintenance, config.source, now=datetime(2026, 3, 1, 12, tzinfo=UTC)
            )
        problems = info.value.problems
        assert {origin for origin, _, _ in problems} == {str(path)}
        want = [
            f"maintenance.windows.{i + 1}{key}" for i, (_, _, key, _) in enumerate(self.ABUSIVE)
        ]
        assert [key for _, key, _ in problems] == want
        for (_, _, _, words), (_, key, message) in zip(self.ABUSIVE, problems, strict=True):
            assert re.search(words, message), (key, message)
        assert "maintenance.windows.0" not in str(info.value)

    @pytest.mark.timeout(30)
    @pytest.mark.usefixtures("restore_logging")  # ``main`` configures logging for the process
    def test_check_config_refuses_them(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``netcortex check-config`` exits 2 and names each abusive window's key."""
        from netcortex.bridge.cli import main

        path = self.config_file(tmp_path)
        assert main(["check-config", str(path)]) == 2
        err = capsys.readouterr().err
        for i in range(1, len(self.ABUSIVE) + 1):
            assert f"{path}: maintenance.windows.{i}" in err
        assert "maintenance.windows.0" not in err


class TestPollSection:
    """``poll`` (issue 5): defaults, environment, and each bad value named by its key."""

    def test_defaults_poll_nothing(self) -> None:
        """Disabled by default, with the documented defaults."""
        poll = load_config(None, {}).poll
        assert not poll.enabled
        assert (poll.interval_seconds, poll.jitter, poll.concurrency) == (60.0, 0.1, 64)
        assert (poll.timeout_seconds, poll.retries, poll.failure_threshold) == (2.0, 1, 3)
        assert poll.max_backoff_factor == 4.0
        assert poll.community.get_secret_value() == "public"
        assert poll.inventory
        assert poll.bgp
        assert poll.state_path == Path("var/poll_state.db")
        assert poll.targets == []

    def test_example_keeps_polling_off_and_documents_it(self) -> None:
        """The shipped example runs without polling and shows a commented poll section."""
        assert not load_config(EXAMPLE, {}).poll.enabled
        assert "# poll:" in EXAMPLE.read_text(encoding="utf-8")

    def test_environment_and_targets(self, tmp_path: Path) -> None:
        """NETCORTEX_POLL__* override the file; targets keep their own community, an
        IPv6 host is canonicalised, and the community never shows."""
        path = write(
            tmp_path,
            "trap: {v3_users: [{user: ops, engine_id: '0x80001f8804abcdef01',"
            " auth_protocol: SHA, auth_key: authkey-0001}]}\n"
            "poll:\n"
            "  targets:\n"
            "    - {device: sw1, host: 192.0.2.1, community: s3cret-community}\n"
            "    - {device: r1, host: '2001:DB8::1', port: 1161, v3_user: ops}\n",
        )
        config = load_config(
            path,
            {
                "NETCORTEX_POLL__ENABLED": "true",
                "NETCORTEX_POLL__INTERVAL_SECONDS": "30",
                "NETCORTEX_POLL__MAX_BACKOFF_FACTOR": "8",
            },
        )
        assert config.poll.enabled
        assert config.poll.interval_seconds == 30
        assert config.poll.max_backoff_factor == 8.0
        sw1, r1 = config.poll.targets
        assert sw1.community is not None
        assert sw1.community.get_secret_value() == "s3cret-community"
        assert (sw1.port, r1.port, r1.host, r1.v3_user) == (161, 1161, "2001:db8::1", "ops")
        assert r1.community is None
        for text in (repr(config), str(config), config.model_dump_json()):
            assert "s3cret-community" not in text

    @pytest.mark.parametrize(
        ("text", "needle"),
        [
            ("poll: {interval_seconds: 0}", r"poll\.interval_seconds"),
            ("poll: {jitter: 0.6}", r"poll\.jitter"),
            ("poll: {concurrency: 0}", r"poll\.concurrency"),
            ("poll: {timeout_seconds: -1}", r"poll\.timeout_seconds"),
            ("poll: {retries: -1}", r"poll\.retries"),
            ("poll: {failure_threshold: 0}", r"poll\.failure_threshold"),
            ("poll: {max_backoff_factor: 0.5}", r"poll\.max_backoff_factor"),
            ("poll: {targets: [{device: a, host: sw1.example.com}]}",
             r"poll\.targets\.0\.host: 'sw1\.example\.com' is not an IP address"),
            ("poll: {targets: [{device: a, host: 192.0.2.1, port: 0}]}",
             r"poll\.targets\.0\.port"),
            ("poll: {targets: [{device: a, host: 192.0.2.1}, {device: a, host: 192.0.2.2}]}",
             r"poll\.targets: device name\(s\) given twice: 'a'"),
            ("poll: {targets: [{device: a, host: 192.0.2.1, v3_user: ghost}]}",
             r"poll\.targets\.0\.v3_user: no trap\.v3_users entry has user 'ghost'"),
            ("poll: {targets: [{device: a, host: 192.0.2.1, colour: red}]}",
             r"poll\.targets\.0\.colour: unknown key"),
        ],
    )  # fmt: skip
    def test_bad_values_name_the_key(self, tmp_path: Path, text: str, needle: str) -> None:
        """Each bad poll value is a ConfigError naming the key (and the file)."""
        path = write(tmp_path, text)
        with pytest.raises(ConfigError, match=needle) as info:
            load_config(path, environ={})
        assert str(path) in str(info.value)

    def test_every_unknown_v3_user_is_reported(self) -> None:
        """Two targets naming missing users: two problems, each under its own key."""
        with pytest.raises(ConfigError) as info:
            load_config(
                None,
                {
                    "NETCORTEX_POLL__TARGETS": "[{device: a, host: 192.0.2.1, v3_user: x},"
                    " {device: b, host: 192.0.2.2}, {device: c, host: 192.0.2.3, v3_user: y}]"
                },
            )
        keys = [key for _, key, _ in info.value.problems]
        assert keys == ["poll.targets.0.v3_user", "poll.targets.2.v3_user"]
