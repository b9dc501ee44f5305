"""The input contract, checked for every registered input: one module and one registry
line make an input, and nothing else may be forgotten (its config documented, in the
example config, a golden line-protocol fixture, no type name elsewhere)."""

from __future__ import annotations

import dataclasses
import importlib
import re
import textwrap
import tomllib
from pathlib import Path

import pytest

from pitelemetry import dashboards
from pitelemetry.config import parse
from pitelemetry.inputs import Input, Options, registry
from pitelemetry.inputs._template import TemplateInput, TemplateOptions
from tests.golden import GOLDEN, T0, assert_golden

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "examples" / "pitelemetry.toml").read_text()
TEMPLATE = "pitelemetry.inputs._template:TemplateInput"


def config_block(cls: type[Input]) -> str:
    """The ``Config::`` block of an input module's docstring, as TOML."""
    doc = importlib.import_module(cls.__module__).__doc__ or ""
    _, found, rest = doc.partition("Config::\n")
    assert found, f"{cls.__module__}: no Config:: block in the docstring"
    block = []
    for line in rest.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


@pytest.mark.parametrize("kind", sorted(registry.INPUTS))
def test_every_input_keeps_the_contract(kind: str, tmp_path: Path) -> None:
    cls = registry.input_class(kind)
    assert issubclass(cls, Input)
    assert issubclass(cls.Options, Options)
    assert dataclasses.is_dataclass(cls.Options)
    assert cls.Options.__dataclass_params__.frozen  # type: ignore[attr-defined]
    # Its documented config loads through the real parser as an input of this type.
    (tmp_path / "twelvedata.key").write_text("key\n")
    config = parse(tomllib.loads(config_block(cls)), "docstring", {}, credstore=tmp_path)
    assert [item.type for item in config.inputs] == [kind]
    # It is offered in the example config, commented out or not.
    assert re.search(rf"^(# )?\[\[inputs\.{kind}\]\]", EXAMPLE, re.MULTILINE), kind
    # Its golden line protocol exists, and a test compares against it.
    assert (GOLDEN / f"{kind}.lp").read_text().strip()
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    assert f'assert_golden("{kind}"' in tests


@pytest.mark.parametrize("kind", sorted(registry.INPUTS))
def test_no_input_type_is_named_outside_its_module(kind: str) -> None:
    package = ROOT / "pitelemetry"
    outside = [p for p in package.rglob("*.py") if "inputs" not in p.parts]
    named = [p.name for p in outside if f'"{kind}"' in p.read_text()]
    assert named == [], f"{kind!r} named in {named}"


def test_the_template_is_a_complete_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registered by one line, the template loads from its documented config and its
    panel is on the Home dashboard, with no other edit."""
    monkeypatch.setitem(registry.INPUTS, "template", TEMPLATE)
    text = config_block(TemplateInput).replace("/sys/class/hwmon/hwmon0", str(tmp_path))
    config = parse(tomllib.loads(text), "docstring", {})
    [home] = [b for b in dashboards.generate(config) if b["title"] == "Home"]
    assert [panel["title"] for panel in home["panels"]] == ["cpu_hwmon temperature_c"]
    (tmp_path / "temp1_input").write_text("48312\n")
    source = TemplateInput(config.inputs[0].options, time_ns=lambda: T0)
    assert_golden("template", source.collect())


def test_the_template_fits_in_100_lines() -> None:
    lines = (ROOT / "pitelemetry" / "inputs" / "_template.py").read_text().splitlines()
    assert len(lines) < 100


def test_template_problems_are_named() -> None:
    options = TemplateOptions(path="relative", name="", field="time")
    assert [key for key, _ in options.problems()] == ["path", "name", "field"]
