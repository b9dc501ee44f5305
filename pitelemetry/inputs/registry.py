"""The input registry: one line per input type, ``name: "module:Class"``.

Modules are imported only when an input of that type is configured, so an unused
input's dependencies (an MQTT client, an HTTP stack) cost no start-up time or memory.
"""

from __future__ import annotations

import importlib

from pitelemetry.inputs import Input, Options

INPUTS: dict[str, str] = {
    "system": "pitelemetry.inputs.system:SystemInput",
    "ds18b20": "pitelemetry.inputs.ds18b20:DS18B20Input",
    "bme280": "pitelemetry.inputs.bme280:BME280Input",
    "dht22": "pitelemetry.inputs.dht22:DHT22Input",
    "pulse": "pitelemetry.inputs.pulse:PulseInput",
    "contact": "pitelemetry.inputs.contact:ContactInput",
    "mcp3008": "pitelemetry.inputs.mcp3008:MCP3008Input",
    "mqtt": "pitelemetry.inputs.mqtt:MQTTInput",
    "stocks": "pitelemetry.inputs.stocks:StocksInput",
}


def input_class(kind: str) -> type[Input]:
    """Import and return the class registered as ``kind``."""
    module_name, _, class_name = INPUTS[kind].partition(":")
    cls: type[Input] = getattr(importlib.import_module(module_name), class_name)
    return cls


def options_class(kind: str) -> type[Options]:
    """The frozen dataclass holding the config keys of input ``kind``."""
    return input_class(kind).Options
