"""pitelemetry: a Raspberry Pi's health, home sensors, MQTT and stock quotes into InfluxDB.

The data flows one way: inputs yield :class:`~pitelemetry.point.Point` objects, the
collector encodes them to line protocol, and the pipeline batches and writes them.
"""

__version__ = "0.1.0"
