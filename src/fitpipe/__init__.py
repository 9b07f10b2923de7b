"""fitpipe: wearable study data into TimescaleDB."""

__version__ = "0.1.0"
