"""The TOML configuration, parsed once at start into frozen dataclasses.

Every section is a dataclass whose annotations are the schema: the parser refuses unknown
keys, wrong types and bad durations with a :class:`ConfigError` naming the file, the key
and what is allowed. Secrets are never values in the file: a ``*_file`` key names a file
(an absolute path, or a credential name looked up in ``$CREDENTIALS_DIRECTORY``) and the
parsed config holds a :class:`Secret`, whose ``repr`` shows only where it came from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import stat
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pitelemetry.point import clean_key, clean_name
from pitelemetry.values import Duration, Secret, SecretFile, parse_duration, url_problem

DEFAULT_PATH = Path("/etc/pitelemetry/pitelemetry.toml")
# Where install.sh keeps secrets; the service gets them in $CREDENTIALS_DIRECTORY, and a
# command run by root outside the service finds a relative name here.
CREDSTORE = Path("/etc/credstore")

__all__ = [  # the value types are defined in pitelemetry.values; config users find them here
    "Duration",
    "Secret",
    "SecretFile",
    "parse_duration",
    "url_problem",
]
MAX_DURATION_S = 10 * 365 * 86400.0
# How often something may run: shorter would only burn the CPU (and starve SIGTERM).
MIN_INTERVAL_S = 0.1
_INTERVAL_KEYS = frozenset({"interval", "flush_interval", "heartbeat_interval"})
# Tag keys InfluxDB refuses (time) or reserves (2.x's _measurement and _field).
RESERVED_TAG_KEYS = frozenset({"time", "_measurement", "_field"})
# A secret is a password, a token or a key: a few hundred bytes. More is not a secret file.
MAX_SECRET_BYTES = 64 * 1024
MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(Exception):
    """A configuration problem; ``str()`` is the message to show the user."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + problem)


@dataclass(frozen=True)
class AgentConfig:
    interval: Duration = Duration(10.0)
    # How often batches are written; unset: 30 s with InfluxDB on this machine (fewer,
    # larger writes spare the SD card: bench/sdwear), 5 s to a server elsewhere.
    flush_interval: Duration | None = None
    batch_size: int = 5000
    host: str = ""
    state_dir: str = "/var/lib/pitelemetry"
    runtime_dir: str = "/run/pitelemetry"
    spool_max_bytes: int = 64 * 1024 * 1024
    # How long to wait for systemd-timesyncd before trusting an unsynchronized clock.
    clock_wait: Duration = Duration(600.0)
    self_metrics: bool = True  # the agent's own health as "pitelemetry" points
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # A healthchecks.io-style or Uptime Kuma push URL pinged while writes succeed; the
    # URL is a secret (it lets anyone report for this Pi) and is never logged.
    heartbeat_url: str = ""
    heartbeat_interval: Duration = Duration(60.0)
    heartbeat_style: Literal["auto", "healthchecks", "uptimekuma"] = "auto"

    @property
    def hostname(self) -> str:
        return self.host or socket.gethostname()


@dataclass(frozen=True)
class InfluxConfig:
    url: str = "http://127.0.0.1:8086"
    api: Literal["auto", "v1", "v2"] = "auto"
    database: str = "pitelemetry"
    retention_policy: str = ""
    username: str = ""
    password_file: Secret | None = None
    org: str = ""
    bucket: str = ""
    token_file: Secret | None = None
    timeout: Duration = Duration(10.0)
    # What `pitelemetry provision` sets up: raw points kept for `retention`, 5-minute
    # means (InfluxDB 1.x: retention policy "downsampled") kept for `long_retention`.
    retention: Duration = Duration(30 * 86400.0)
    long_retention: Duration = Duration(730 * 86400.0)
    downsample_every: Duration = Duration(300.0)
    # "auto": gzip request bodies unless InfluxDB runs on this machine, where
    # compressing only costs the Pi's CPU; "gzip" or "none" to force it.
    compression: Literal["auto", "gzip", "none"] = "auto"

    @property
    def local(self) -> bool:
        """Whether InfluxDB runs on this machine (by its URL)."""
        host = urllib.parse.urlsplit(self.url).hostname or ""
        return host in ("localhost", "127.0.0.1", "::1")

    @property
    def use_gzip(self) -> bool:
        if self.compression != "auto":
            return self.compression == "gzip"
        return not self.local


@dataclass(frozen=True)
class GrafanaConfig:
    url: str = "http://127.0.0.1:3000"
    token_file: Secret | None = None  # a service-account token (preferred), or:
    username: str = ""
    password_file: Secret | None = None
    folder: str = "Pi telemetry"
    folder_uid: str = "pitelemetry"
    datasource_name: str = "pitelemetry InfluxDB"
    datasource_uid: str = "pitelemetry-influxdb"
    timeout: Duration = Duration(10.0)


ContactType = Literal[
    "email", "telegram", "webhook", "discord", "slack", "pushover", "teams", "googlechat"
]


@dataclass(frozen=True)
class ContactConfig:
    """One ``[[alerts.contacts]]``: a Grafana contact point. Secrets only from files,
    read when provisioning (:func:`read_secret_file`), never by the daemon, which does
    not need them (its unit does not even receive them)."""

    name: str
    type: ContactType
    chat_id: str = ""  # telegram
    bot_token_file: SecretFile = SecretFile("")  # telegram
    addresses: str = ""  # email: one or more, separated by ";" or ","
    url: str = ""  # webhook (a URL holding a token belongs in url_file)
    url_file: SecretFile = SecretFile("")  # webhook, discord, slack, teams, googlechat
    username: str = ""  # webhook basic auth
    password_file: SecretFile = SecretFile("")  # webhook basic auth
    user_key_file: SecretFile = SecretFile("")  # pushover
    api_token_file: SecretFile = SecretFile("")  # pushover


@dataclass(frozen=True)
class RuleConfig:
    """One ``[[alerts.rules]]``: a field above or below a threshold for a while, or
    no data for a while."""

    name: str
    measurement: str
    field: str
    where: Mapping[str, str] = dataclasses.field(default_factory=dict)
    above: float | None = None
    below: float | None = None
    for_: Duration = dataclasses.field(default=Duration(0.0), metadata={"key": "for"})
    no_data_for: Duration | None = None
    severity: Literal["critical", "warning", "info"] = "warning"
    contact: str = ""


@dataclass(frozen=True)
class AlertsConfig:
    defaults: bool = True  # the inputs' default rules
    disable: tuple[str, ...] = ()  # default rules switched off by name
    contact: str = ""  # where every rule notifies; one of contacts
    contacts: tuple[ContactConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()


@dataclass(frozen=True)
class BackupConfig:
    to: str = ""  # a directory on another device (USB disk, NAS mount); "" = no timer
    keep: int = 7  # this host's newest backups kept there
    influxdb_rpc: str = "127.0.0.1:8088"  # InfluxDB 1.x's backup service (top bind-address)


@dataclass(frozen=True)
class InputConfig:
    """One ``[[inputs.<type>]]`` table: the shared keys, and the input's own options."""

    type: str
    index: int
    interval: float
    timeout: float
    tags: Mapping[str, str]
    options: Any

    @property
    def name(self) -> str:
        """``system`` for the first input of a type, ``system#2`` for the second."""
        return self.type if self.index == 0 else f"{self.type}#{self.index + 1}"


@dataclass(frozen=True)
class Config:
    path: str
    agent: AgentConfig = field(default_factory=AgentConfig)
    influxdb: InfluxConfig = field(default_factory=InfluxConfig)
    grafana: GrafanaConfig = field(default_factory=GrafanaConfig)
    inputs: tuple[InputConfig, ...] = ()
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)


# Credential names used when a *_file key is empty, e.g. with systemd's LoadCredential=.
_DEFAULT_CREDENTIALS = {
    ("influxdb", "password_file"): "influxdb.password",
    ("influxdb", "token_file"): "influxdb.token",
    ("grafana", "token_file"): "grafana.token",
    ("grafana", "password_file"): "grafana.password",
}


class _Parser:
    def __init__(self, path: Path, environ: Mapping[str, str], credstore: Path) -> None:
        self.path = path
        self.environ = environ
        self.credstore = credstore

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.path, key, problem)

    def section(
        self, cls: type[Any], table: object, where: str, also_allowed: tuple[str, ...] = ()
    ) -> Any:
        """Build dataclass ``cls`` from ``table``, checking every key against its fields."""
        if not isinstance(table, dict):
            raise self.error(where, f"expected a table, got {_describe(table)}")
        hints = typing.get_type_hints(cls)
        # A field's key in the file is its name, or metadata["key"] ("for" is Python's).
        fields = {f.metadata.get("key", f.name): f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(table) - set(fields))
        if unknown:
            allowed = ", ".join(sorted([*fields, *also_allowed]))
            raise self.error(f"{where}.{unknown[0]}", f"unknown key; allowed keys: {allowed}")
        values = {}
        for name, spec in fields.items():
            key = f"{where}.{name}" if where else name
            if name in table:
                values[spec.name] = self.value(hints[spec.name], table[name], key)
            elif hints[spec.name] == Secret | None:
                values[spec.name] = self.default_secret(where, name)
            elif (
                spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            ):
                raise self.error(key, "required key is missing")
        return cls(**values)

    def value(self, hint: Any, raw: object, key: str) -> Any:  # noqa: PLR0912, PLR0915
        origin = typing.get_origin(hint)
        if hint is Duration:
            if not isinstance(raw, str):
                raise self.error(key, f'expected a duration like "10s", got {_describe(raw)}')
            try:
                seconds = parse_duration(raw)
            except ValueError:
                raise self.error(
                    key, f'bad duration {raw!r}; use a number and unit: ms, s, m, h, d ("10s")'
                ) from None
            if seconds <= 0:
                raise self.error(key, f"duration {raw!r} must be greater than zero")
            if seconds > MAX_DURATION_S:
                raise self.error(key, f"duration {raw!r} is longer than ten years")
            minimum = MIN_INTERVAL_S if key.rsplit(".", 1)[-1] in _INTERVAL_KEYS else 0.001
            if seconds < minimum:
                raise self.error(
                    key, f"duration {raw!r} is too short; the least is {minimum * 1000:g}ms"
                )
            return Duration(seconds)
        if hint == Secret | None:
            return self.secret(raw, key)
        if hint is SecretFile:
            if not isinstance(raw, str):
                raise self.error(key, f"expected the path of a file, got {_describe(raw)}")
            return SecretFile(raw)
        if origin is Literal:
            allowed = typing.get_args(hint)
            if raw not in allowed:
                choices = ", ".join(str(a) for a in allowed)
                raise self.error(key, f"{raw!r} is not allowed; expected one of {choices}")
            return raw
        if hint is bool:
            if not isinstance(raw, bool):
                raise self.error(key, f"expected true or false, got {_describe(raw)}")
            return raw
        if hint is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise self.error(key, f"expected an integer, got {_describe(raw)}")
            if raw < 0:
                raise self.error(key, f"must not be negative, got {raw}")
            return raw
        if hint is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise self.error(key, f"expected a number, got {_describe(raw)}")
            if not math.isfinite(raw):
                raise self.error(key, f"expected a finite number, got {raw}")
            return float(raw)
        if hint is str:
            if not isinstance(raw, str):
                raise self.error(key, f"expected a string, got {_describe(raw)}")
            return raw
        if origin is tuple:
            (item_hint, _) = typing.get_args(hint)
            if not isinstance(raw, list):
                raise self.error(key, f"expected a list, got {_describe(raw)}")
            return tuple(self.value(item_hint, item, f"{key}[{i}]") for i, item in enumerate(raw))
        if origin in (dict, Mapping, typing.get_origin(Mapping[str, str])):
            if not isinstance(raw, dict):
                raise self.error(
                    key, f'expected a table like {{ name = "value" }}, got {_describe(raw)}'
                )
            _, value_hint = typing.get_args(hint)
            return types.MappingProxyType(
                {str(k): self.value(value_hint, v, f"{key}.{k}") for k, v in raw.items()}
            )
        if origin in (types.UnionType, typing.Union):
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(options) == 1:
                return self.value(options[0], raw, key)
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return self.section(hint, raw, key)
        raise self.error(key, f"cannot read a value of type {hint}")  # a schema bug, not user's

    def secret(self, raw: object, key: str) -> Secret | None:
        if not isinstance(raw, str):
            raise self.error(key, f"expected the path of a file, got {_describe(raw)}")
        if not raw:
            return None
        candidates = [Path(raw)]
        if not Path(raw).is_absolute():
            credentials = self.environ.get("CREDENTIALS_DIRECTORY")
            if credentials:
                candidates.insert(0, Path(credentials) / raw)
            else:
                candidates.append(self.credstore / raw)
        for candidate in candidates:
            try:
                text = _read_secret(candidate)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                problem = f"cannot read secret file {candidate}: {_reason(exc)}"
                raise self.error(key, problem) from None
            if not text.strip():
                raise self.error(key, f"secret file {candidate} is empty")
            return Secret(text.strip(), str(candidate))
        looked = " or ".join(str(c) for c in candidates)
        raise self.error(key, f"secret file not found: {looked}")

    def default_secret(self, where: str, name: str) -> Secret | None:
        credential = _DEFAULT_CREDENTIALS.get((where, name))
        directory = self.environ.get("CREDENTIALS_DIRECTORY")
        if not credential or not directory:
            return None
        path = Path(directory) / credential
        try:
            if not path.read_text(encoding="utf-8").strip():
                return None  # install.sh's empty placeholder: not configured
        except OSError:
            return None
        return self.secret(str(path), f"{where}.{name}")


def secret_objects(value: object) -> list[Secret]:
    """Every :class:`Secret` held anywhere in a parsed config."""
    if isinstance(value, Secret):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [
            s for f in dataclasses.fields(value) for s in secret_objects(getattr(value, f.name))
        ]
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in secret_objects(item)]
    if isinstance(value, tuple | list):
        return [s for item in value for s in secret_objects(item)]
    return []


def secrets_of(config: Config) -> list[str]:
    """The values of every secret in ``config`` (for the log's redaction); the heartbeat
    URL is one, though written in the file."""
    secrets = [secret.reveal() for secret in secret_objects(config)]
    return secrets + ([config.agent.heartbeat_url] if config.agent.heartbeat_url else [])


def read_secret_file(
    config: Config,
    key: str,
    name: str,
    environ: Mapping[str, str] | None = None,
    credstore: Path = CREDSTORE,
) -> Secret:
    """The secret a ``SecretFile`` key names, when it is needed (provisioning): an
    absolute path, or a name in ``$CREDENTIALS_DIRECTORY`` or in ``credstore``.
    Raises :class:`ConfigError` naming ``key``."""
    environ = os.environ if environ is None else environ
    parser = _Parser(Path(config.path), environ, credstore)
    if not Path(name).is_absolute() and environ.get("CREDENTIALS_DIRECTORY"):
        try:  # the service's credentials, else the credstore itself (root)
            secret = parser.secret(name, key)
        except ConfigError:
            parser = _Parser(Path(config.path), {}, credstore)
        else:
            if secret is not None:
                return secret
    secret = parser.secret(name, key)
    if secret is None:
        raise ConfigError(config.path, key, "no file named")
    return secret


def contact_secrets(
    config: Config, environ: Mapping[str, str] | None = None, credstore: Path = CREDSTORE
) -> Callable[[ContactConfig], Callable[[str, str], str]]:
    """For one contact, ``reveal(key, name)``: its ``*_file`` secrets, read on demand
    (:func:`read_secret_file`), errors naming ``alerts.contacts[i].<key>``."""

    def for_contact(contact: ContactConfig) -> Callable[[str, str], str]:
        index = config.alerts.contacts.index(contact)

        def reveal(key: str, name: str) -> str:
            where = f"alerts.contacts[{index}].{key}"
            return read_secret_file(config, where, name, environ, credstore).reveal()

        return reveal

    return for_contact


def _read_secret(path: Path) -> str:
    """A secret file's text. Only a regular file of at most ``MAX_SECRET_BYTES`` in
    UTF-8 is read: a FIFO would block the start for ever, ``/dev/zero`` fill the memory."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    if info.st_size > MAX_SECRET_BYTES:
        raise ValueError(f"{info.st_size} bytes; a secret file holds at most {MAX_SECRET_BYTES}")
    data = path.read_bytes()[:MAX_SECRET_BYTES]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _describe(raw: object) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }
    return f"{names.get(type(raw), type(raw).__name__)} ({raw!r})"


def load(
    path: Path | str = DEFAULT_PATH,
    environ: Mapping[str, str] | None = None,
    credstore: Path = CREDSTORE,
) -> Config:
    """Read and validate the config file; raises :class:`ConfigError` on any problem."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        info = path.stat()
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(path, "", f"{info.st_size} bytes is too large for a config file")
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            raise ConfigError(path, "", "not a regular file")  # a FIFO would block for ever
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(path, "", "config file not found") from None
    except PermissionError:
        raise ConfigError(path, "", "permission denied reading the config file") from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a directory, not a config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(path, "", "not valid TOML: nested too deep") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the config file: {_reason(exc)}") from None
    return parse(data, path, environ, credstore)


def parse(
    data: Mapping[str, Any],
    path: Path | str,
    environ: Mapping[str, str],
    credstore: Path = CREDSTORE,
) -> Config:
    """Validate already-decoded TOML ``data`` (``path`` is used in messages)."""
    parser = _Parser(Path(path), environ, credstore)
    known = {"agent", "influxdb", "grafana", "inputs", "alerts", "backup"}
    for key in data:
        if key not in known:
            raise parser.error(key, f"unknown section; allowed: {', '.join(sorted(known))}")
    agent = parser.section(AgentConfig, data.get("agent", {}), "agent")
    if agent.batch_size < 1:
        raise parser.error("agent.batch_size", "must be at least 1")
    influxdb = parser.section(InfluxConfig, data.get("influxdb", {}), "influxdb")
    if problem := url_problem(influxdb.url, ("http", "https")):
        raise parser.error("influxdb.url", problem)
    grafana = parser.section(GrafanaConfig, data.get("grafana", {}), "grafana")
    if problem := url_problem(grafana.url, ("http", "https")):
        raise parser.error("grafana.url", problem)

    if agent.heartbeat_url and (problem := url_problem(agent.heartbeat_url, ("http", "https"))):
        raise parser.error("agent.heartbeat_url", problem)
    inputs = _inputs(parser, data.get("inputs", {}), agent)
    alerts = parser.section(AlertsConfig, data.get("alerts", {}), "alerts")
    _check_alerts(parser, alerts, inputs)
    backup = parser.section(BackupConfig, data.get("backup", {}), "backup")
    if backup.to and not backup.to.startswith("/"):
        raise parser.error("backup.to", f"{backup.to!r} is not an absolute path")
    if backup.keep < 1:
        raise parser.error("backup.keep", "keep at least 1 backup")
    return Config(str(path), agent, influxdb, grafana, inputs, alerts, backup)


def _inputs(parser: _Parser, inputs_table: object, agent: AgentConfig) -> tuple[InputConfig, ...]:
    """Every ``[[inputs.<type>]]`` table, checked alone and against the others: no two
    claim one GPIO pin or I2C address, no two of a type write one sensor name."""
    from pitelemetry.inputs import registry  # noqa: PLC0415 - config is imported by inputs

    if not isinstance(inputs_table, dict):
        raise parser.error("inputs", "expected [[inputs.<type>]] tables")
    inputs: list[InputConfig] = []
    claimed: dict[object, str] = {}  # "GPIO17", (type, name) ... -> the key that has it
    for kind, raw_tables in inputs_table.items():
        if kind not in registry.INPUTS:
            known_inputs = ", ".join(sorted(registry.INPUTS))
            raise parser.error(f"inputs.{kind}", f"unknown input type; known: {known_inputs}")
        tables = [raw_tables] if isinstance(raw_tables, dict) else raw_tables
        if not isinstance(tables, list):
            raise parser.error(f"inputs.{kind}", f"write it as [[inputs.{kind}]]")
        options_cls = registry.options_class(kind)
        for index, table in enumerate(tables):
            where = f"inputs.{kind}[{index}]"
            if not isinstance(table, dict):
                raise parser.error(where, "expected a table")
            shared = {k: table[k] for k in _SHARED_INPUT_KEYS if k in table}
            own = {k: v for k, v in table.items() if k not in shared}
            common = parser.section(_InputCommon, shared, where)
            _check_tags(parser, where, common.tags)
            interval = common.interval or options_cls.default_interval or agent.interval
            options = parser.section(options_cls, own, where, _SHARED_INPUT_KEYS)
            for key, problem in options.problems():
                raise parser.error(f"{where}.{key}", problem)
            taken = [(claim, key, f"{claim} is already used by") for key, claim in options.claims()]
            taken += [
                ((kind, name), key, f"name {name!r} is already used by")
                for key, name in options.sensor_names()
            ]
            for claim, key, problem in taken:
                if (other := claimed.setdefault(claim, f"{where}.{key}")) != f"{where}.{key}":
                    raise parser.error(f"{where}.{key}", f"{problem} {other}")
            inputs.append(
                InputConfig(
                    type=kind,
                    index=index,
                    interval=interval,
                    timeout=common.timeout or interval,
                    tags=common.tags,
                    options=options,
                )
            )
    return tuple(inputs)


_SHARED_INPUT_KEYS = ("interval", "timeout", "tags")


def _check_tags(parser: _Parser, where: str, tags: Mapping[str, str]) -> None:
    for tag in tags:
        if tag in RESERVED_TAG_KEYS or not tag.strip():
            raise parser.error(
                f"{where}.tags.{tag}",
                f"{tag!r} cannot be a tag key (InfluxDB refuses or reserves it)",
            )


@dataclass(frozen=True)
class _InputCommon:
    interval: Duration | None = None
    timeout: Duration | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


# For each contact point type: the keys it needs (one of a tuple will do).
CONTACT_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "telegram": (("chat_id",), ("bot_token_file",)),
    "email": (("addresses",),),
    "webhook": (("url", "url_file"),),
    "discord": (("url_file",),),
    "slack": (("url_file",),),
    "teams": (("url_file",),),
    "googlechat": (("url_file",),),
    "pushover": (("user_key_file",), ("api_token_file",)),
}


def _check_alerts(parser: _Parser, alerts: AlertsConfig, inputs: tuple[InputConfig, ...]) -> None:
    from pitelemetry.alerting import agent_rules  # noqa: PLC0415 - it imports inputs' kin

    names = _check_contacts(parser, alerts)
    rule_names: set[str] = set()
    for index, rule in enumerate(alerts.rules):
        where = f"alerts.rules[{index}]"
        if not rule.name.strip() or rule.name in rule_names:
            raise parser.error(f"{where}.name", f"{rule.name!r}: give each rule a new name")
        rule_names.add(rule.name)
        conditions = [rule.above is not None, rule.below is not None, rule.no_data_for is not None]
        if sum(conditions) != 1:
            raise parser.error(where, "set exactly one of above, below and no_data_for")
        if not clean_name(rule.measurement).strip():
            raise parser.error(f"{where}.measurement", "a measurement is needed")
        if clean_key(rule.field) in ("", "time"):
            raise parser.error(f"{where}.field", f"{rule.field!r} cannot be a field")
        if rule.contact and rule.contact not in names:
            problem = f"{rule.contact!r} is none of [[alerts.contacts]]"
            raise parser.error(f"{where}.contact", problem)
    defaults = {r.name for r in agent_rules()} | {"backup_old"}
    defaults |= {r.name for item in inputs for r in item.options.alerts()}
    for index, name in enumerate(alerts.disable):
        if name not in defaults:
            problem = f"{name!r} is no default rule; known: {', '.join(sorted(defaults))}"
            raise parser.error(f"alerts.disable[{index}]", problem)


def _check_contacts(parser: _Parser, alerts: AlertsConfig) -> set[str]:
    names: set[str] = set()
    for index, contact in enumerate(alerts.contacts):
        where = f"alerts.contacts[{index}]"
        if not contact.name.strip() or contact.name in names:
            raise parser.error(f"{where}.name", f"{contact.name!r}: give each contact a new name")
        names.add(contact.name)
        for keys in CONTACT_KEYS[contact.type]:
            if not any(getattr(contact, key) for key in keys):
                raise parser.error(
                    f"{where}.{keys[0]}", f"a {contact.type} contact needs {' or '.join(keys)}"
                )
        if contact.url and (problem := url_problem(contact.url, ("http", "https"))):
            raise parser.error(f"{where}.url", problem)
    if alerts.contact and alerts.contact not in names:
        raise parser.error("alerts.contact", f"{alerts.contact!r} is none of [[alerts.contacts]]")
    return names


LOCAL_FLUSH_S = 30.0
REMOTE_FLUSH_S = 5.0


def flush_interval(config: Config) -> float:
    """``[agent] flush_interval``, or its default by where InfluxDB is."""
    if config.agent.flush_interval is not None:
        return config.agent.flush_interval
    return LOCAL_FLUSH_S if config.influxdb.local else REMOTE_FLUSH_S
