"""Pulse meters, contacts and the MCP3008 with gpiozero's MockFactory driving the pins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from pitelemetry.config import Duration
from pitelemetry.inputs import InputError
from pitelemetry.inputs.contact import ContactInput, ContactOptions
from pitelemetry.inputs.mcp3008 import MCP3008Input, MCP3008Options
from pitelemetry.inputs.pulse import PulseInput, PulseOptions
from pitelemetry.point import Point
from tests.golden import assert_golden

T0 = 1_795_300_000_000_000_000


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    mock = MockFactory()
    yield mock
    mock.reset()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pulses(factory: MockFactory, pin: int, count: int, clock: Clock, every: float) -> None:
    """S0 pulses: the open collector pulls the pin low for each."""
    mock_pin = factory.pin(pin)
    for _ in range(count):
        clock.now += every
        mock_pin.drive_low()
        mock_pin.drive_high()


def test_s0_meter_energy_and_power(factory: MockFactory, tmp_path: Path) -> None:
    clock = Clock()
    meter = PulseInput(
        PulseOptions(pin=17, name="house", pulses_per_unit=1000, meter_start=12.5),
        state_dir=tmp_path,
        pin_factory=factory,
        monotonic=clock,
        time_ns=lambda: T0,
    )
    [first] = meter.collect()
    assert first.fields == {"pulses": 0, "energy_wh": 12500.0, "power_w": 0.0}
    pulses(factory, 17, 10, clock, every=3.6)  # 1 Wh every 3.6 s = 1000 W
    [point] = meter.collect()
    assert point.fields == pytest.approx({"pulses": 10, "energy_wh": 12510.0, "power_w": 1000.0})
    assert (point.measurement, point.tags, point.time_ns) == (
        "meter",
        {"name": "house", "kind": "electricity"},
        T0,
    )
    assert factory.pin(17).bounce == 0.01  # debounced by the pin driver
    assert factory.pin(17).pull == "up"


def test_rate_falls_when_pulses_stop_then_zero(factory: MockFactory, tmp_path: Path) -> None:
    clock = Clock()
    options = PulseOptions(pin=5, kind="water", pulses_per_unit=1000, zero_after=Duration(60))
    meter = PulseInput(options, state_dir=tmp_path, pin_factory=factory, monotonic=clock)
    list(meter.collect())
    pulses(factory, 5, 3, clock, every=6.0)  # 1 l every 6 s = 10 l/min
    assert next(iter(meter.collect())).fields["flow_l_min"] == pytest.approx(10.0)
    clock.now += 30  # no pulse for 30 s: at most 1 l per 30 s
    assert next(iter(meter.collect())).fields["flow_l_min"] == pytest.approx(2.0)
    clock.now += 31  # past zero_after
    point = next(iter(meter.collect()))
    assert point.fields["flow_l_min"] == 0.0
    assert point.fields["volume_l"] == 3.0


def test_gas_units(factory: MockFactory, tmp_path: Path) -> None:
    clock = Clock()
    options = PulseOptions(pin=6, kind="gas", pulses_per_unit=100)  # 0.01 m³ per pulse
    meter = PulseInput(options, state_dir=tmp_path, pin_factory=factory, monotonic=clock)
    list(meter.collect())
    pulses(factory, 6, 2, clock, every=36.0)  # 0.01 m³ per 36 s = 1 m³/h
    fields = next(iter(meter.collect())).fields
    assert fields["volume_m3"] == pytest.approx(0.02)
    assert fields["flow_m3_h"] == pytest.approx(1.0)


def test_the_count_survives_a_restart_and_is_written_rarely(
    factory: MockFactory, tmp_path: Path
) -> None:
    clock = Clock()
    options = PulseOptions(pin=17, name="house", save_every=Duration(300))
    meter = PulseInput(options, state_dir=tmp_path, pin_factory=factory, monotonic=clock)
    list(meter.collect())
    pulses(factory, 17, 7, clock, every=1.0)
    list(meter.collect())
    state = tmp_path / "pulse-house.json"
    assert not state.exists()  # not yet: SD cards wear
    clock.now += 300
    list(meter.collect())
    assert json.loads(state.read_text()) == {"pulses": 7}
    pulses(factory, 17, 2, clock, every=1.0)
    meter.close()  # shutdown saves
    factory.reset()
    again = PulseInput(options, state_dir=tmp_path, pin_factory=factory, monotonic=clock)
    assert next(iter(again.collect())).fields["pulses"] == 9


def test_door_contact_state_changes_and_events(factory: MockFactory) -> None:
    emitted: list[list[Point]] = []
    door = ContactInput(
        ContactOptions(pin=27, name="front_door"), pin_factory=factory, time_ns=lambda: T0
    )
    door.start(lambda points, on_durable=None, **_: emitted.append(points))
    pin = factory.pin(27)
    pin.drive_low()  # the magnet closes the reed contact: door closed
    [closed] = door.collect()
    assert closed.fields == {"state": False, "changes": 1}
    pin.drive_high()  # door opened
    pin.drive_low()  # and closed again
    states = [batch[0].fields["state"] for batch in emitted]
    titles = [batch[1].fields["title"] for batch in emitted]
    assert states == [False, True, False]
    assert titles == ["front_door closed", "front_door opened", "front_door closed"]
    assert emitted[1][1].tags == {"kind": "door_opened", "source": "front_door"}
    assert pin.pull == "up"
    assert pin.bounce == 0.05


def test_pir_motion_without_pull_up(factory: MockFactory) -> None:
    emitted: list[list[Point]] = []
    pir = ContactInput(ContactOptions(pin=4, name="hall", kind="motion"), pin_factory=factory)
    pir.start(lambda points, on_durable=None, **_: emitted.append(points))
    assert factory.pin(4).pull == "down"  # a PIR drives its output both ways
    factory.pin(4).drive_high()
    assert emitted[0][0].fields["state"] is True
    assert emitted[0][1].fields["title"] == "hall motion"
    assert next(iter(pir.collect())).tags == {"name": "hall", "kind": "motion"}


def test_invert_flips_the_meaning(factory: MockFactory) -> None:
    window = ContactInput(ContactOptions(pin=22, kind="window", invert=True), pin_factory=factory)
    list(window.collect())
    factory.pin(22).drive_low()
    assert next(iter(window.collect())).fields["state"] is True


def test_no_gpio_is_an_input_error_with_a_hint() -> None:
    from gpiozero.pins.mock import MockFactory as Factory  # noqa: PLC0415

    factory = Factory()
    factory.pin(3)
    busy = ContactInput(ContactOptions(pin=3), pin_factory=factory)
    list(busy.collect())  # opens fine
    other = ContactInput(ContactOptions(pin=3), pin_factory=factory)
    with pytest.raises(InputError, match="GPIO3"):
        list(other.collect())
    factory.reset()


class FakeADC:
    def __init__(self, value: float) -> None:
        self.value = value
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_mcp3008_scales_to_a_named_unit() -> None:
    adc = FakeADC(0.565)
    opened = []

    def open_adc(channel: int, device: int) -> FakeADC:
        opened.append((channel, device))
        return adc

    soil = MCP3008Input(
        MCP3008Options(
            channel=2,
            field="moisture_pct",
            name="tomatoes",
            raw_min=0.78,
            raw_max=0.35,
            scale_min=0.0,
            scale_max=100.0,
        ),
        open_adc=open_adc,
        time_ns=lambda: T0,
    )
    [point] = soil.collect()
    assert opened == [(2, 0)]
    assert point.fields["moisture_pct"] == pytest.approx(50.0)  # halfway from dry to wet
    assert point.fields["raw"] == 0.565
    assert point.tags == {"sensor": "mcp3008", "name": "tomatoes", "channel": "2"}
    soil.close()
    assert adc.closed


@pytest.mark.filterwarnings("ignore::gpiozero.exc.SPISoftwareFallback")
def test_mcp3008_through_gpiozero_on_mock_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpiozero import Device  # noqa: PLC0415

    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    adc = MCP3008Input(MCP3008Options(channel=0, field="light_pct", scale_max=100.0))
    try:
        [point] = adc.collect()  # gpiozero's software SPI on mock pins: a floating input
    finally:
        adc.close()
        Device.pin_factory.reset()
        Device.pin_factory = None
    raw = point.fields["raw"]
    assert isinstance(raw, float)
    assert 0.0 <= raw < 0.01
    assert point.fields["light_pct"] == pytest.approx(raw * 100)


@pytest.mark.filterwarnings("ignore::gpiozero.exc.PinFactoryFallback")
def test_mcp3008_off_a_pi_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from pitelemetry.inputs.mcp3008 import open_mcp3008  # noqa: PLC0415

    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    with pytest.raises(InputError, match="MCP3008 on SPI0 CE0"):
        open_mcp3008(0, 0)


def test_golden_line_protocol_pulse(factory: MockFactory, tmp_path: Path) -> None:
    points: list[Point] = []
    for pin, kind in ((17, "electricity"), (18, "water"), (19, "gas")):
        clock = Clock()
        meter = PulseInput(
            PulseOptions(pin=pin, kind=kind, pulses_per_unit=1000),  # type: ignore[arg-type]
            state_dir=tmp_path,
            pin_factory=factory,
            monotonic=clock,
            time_ns=lambda: T0,
        )
        list(meter.collect())  # opens the pin
        pulses(factory, pin, 10, clock, every=3.6)
        points += meter.collect()
    assert_golden("pulse", points)


def test_golden_line_protocol_contact(factory: MockFactory) -> None:
    emitted: list[Point] = []
    door = ContactInput(
        ContactOptions(pin=27, name="front_door"), pin_factory=factory, time_ns=lambda: T0
    )
    door.start(lambda points, on_durable=None, **_: emitted.extend(points))
    factory.pin(27).drive_low()
    collected = list(door.collect())
    factory.pin(27).drive_high()
    assert_golden("contact", [*collected, *emitted])


def test_golden_line_protocol_mcp3008() -> None:
    soil = MCP3008Input(
        MCP3008Options(
            channel=2,
            field="moisture_pct",
            name="tomatoes",
            raw_min=0.78,
            raw_max=0.35,
            scale_max=100.0,
        ),
        open_adc=lambda channel, device: FakeADC(0.565),
        time_ns=lambda: T0,
    )
    assert_golden("mcp3008", soil.collect())
