from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, load_settings, parse_listen


def test_defaults_without_file() -> None:
    settings = load_settings(None)
    assert (settings.server.listen_host, settings.server.listen_port) == ("127.0.0.1", 2222)
    assert settings.data_dir == Path("var")


def test_example_config_loads() -> None:
    example = Path(__file__).parents[2] / "etc" / "sftpd.toml"
    settings = load_settings(example)
    assert settings.schedule.hours == (0, 6, 12, 18)


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('data_dir = "/srv/x"\n[server]\nmax_upload_bytes = 10\n[defender]\nfailure_delay_seconds = 0\n')
    settings = load_settings(path)
    assert settings.data_dir == Path("/srv/x")
    assert settings.server.max_upload_bytes == 10
    assert settings.defender.failure_delay_seconds == 0.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("[server]\nlisten_prot = 1\n", "unknown setting 'listen_prot'"),
        ("[server]\nlisten_port = 'x'\n", "server: listen_port: expected int"),
        ("server = 1\n", "expected a \\[section\\]"),
        ("[server\n", "c.toml"),
        ("[post]\nembedded_batch_rows = 0\n", "post: embedded_batch_rows: 0 is not between 1 and 100000"),
    ],
)
def test_bad_config_names_the_setting(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_parse_listen() -> None:
    assert parse_listen("0.0.0.0:22") == ("0.0.0.0", 22)
    assert parse_listen("[::1]:2222") == ("::1", 2222)
    with pytest.raises(ConfigError):
        parse_listen("localhost")


def test_the_example_file_names_every_setting_at_its_default() -> None:
    """``etc/sftpd.toml`` documents every setting: each one is there, with the default value
    (settings without a value, such as ``mail.outbox_dir``, are shown commented out)."""
    import dataclasses
    import tomllib

    from core.config import Settings

    example = Path(__file__).parents[2] / "etc" / "sftpd.toml"
    raw = tomllib.loads(example.read_text(encoding="utf-8"))
    missing = []
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        value = getattr(defaults, section.name)
        if not dataclasses.is_dataclass(value):
            missing += [] if section.name in raw else [section.name]
            continue
        for item in dataclasses.fields(value):
            if getattr(value, item.name) is not None and item.name not in raw.get(section.name, {}):
                missing.append(f"{section.name}.{item.name}")
    assert missing == []
    assert load_settings(example) == defaults


@pytest.mark.parametrize("value", ["-1", "36501", "1.5", "true"])
def test_retention_days_must_be_whole_days_in_range(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[retention]\nreport_days = {value}\n")
    with pytest.raises(ConfigError, match="report_days"):
        load_settings(path)


def test_retention_of_zero_days_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[retention]\nupload_days = 0\n")
    assert load_settings(path).retention.upload_days == 0
