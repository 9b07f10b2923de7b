"""users/me/pairedDevices (ListPairedDevicesResponse) as the source contract's DeviceSync: each
paired device's last sync with the Fitbit app, its battery and its kind. Google documents the
fields (name, deviceType, batteryStatus, batteryLevel, lastSyncTime, deviceVersion, macAddress,
features); fitpipe keeps no MAC address and no feature list."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from fitpipe.sources.contract import DeviceSync, PairedDevice


def _instant(timestamp: Any) -> dt.datetime | None:
    # An unset Timestamp reads as 0 seconds: "not reported", not 1970.
    if not timestamp.seconds and not timestamp.nanos:
        return None
    return dt.datetime.fromtimestamp(timestamp.seconds + timestamp.nanos / 1e9, dt.UTC)


def device_sync_from(pages: Iterable[Any]) -> DeviceSync:
    """The devices of raw ListPairedDevicesResponse pages (protobuf)."""
    devices = []
    for page in pages:
        for device in page.paired_devices:
            kind = device.DESCRIPTOR.fields_by_name["device_type"].enum_type.values_by_number.get(device.device_type)
            devices.append(
                PairedDevice(
                    device=device.name,
                    device_type=kind.name if kind is not None else None,
                    device_version=device.device_version or None,
                    last_sync_time=_instant(device.last_sync_time) if device.HasField("last_sync_time") else None,
                    # proto3 int32 without presence: 0 is also "not reported"; a watch at 0 % does not sync.
                    battery_level=device.battery_level or None,
                    battery_status=device.battery_status or None,
                )
            )
    return DeviceSync(tuple(devices))
