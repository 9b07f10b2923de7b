"""users/me/pairedDevices: the account's watch, its last sync with the phone app and its battery,
as Google's ListPairedDevicesResponse (built with the generated client's own types).

The watch's last sync is the account's `synced_until` (what the data pages hold back too), or the
moment of the request when the account is fully synced. The method needs the
googlehealth.settings.readonly scope; a token without it is answered 403, as Google would."""

from __future__ import annotations

import datetime as dt
import json

from fitpipe.sources.google_health.standin.model import JSON, PROTOBUF, Account

SETTINGS_SCOPE = "https://www.googleapis.com/auth/googlehealth.settings.readonly"


def battery_status(level: int) -> str:
    return "High" if level >= 60 else "Medium" if level >= 25 else "Low" if level > 0 else "Empty"


def paired_devices_page(account: Account, alt: str, now: dt.datetime | None = None) -> tuple[bytes, str]:
    """The account's devices (one watch, or none), serialised for the wire `$alt` asks for."""
    from google.devicesandservices import health_v4
    from google.protobuf import timestamp_pb2
    from google.protobuf.json_format import MessageToDict

    response = health_v4.ListPairedDevicesResponse.pb()()
    if account.device_paired:
        synced = account.synced_until or now or dt.datetime.now(dt.UTC)
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(synced.astimezone(dt.UTC).replace(tzinfo=None))
        response.paired_devices.append(
            health_v4.PairedDevice.pb()(
                name=f"users/me/pairedDevices/{account.account_id[-6:]}",
                device_type=health_v4.PairedDevice.DeviceType.TRACKER,
                battery_status=battery_status(account.battery_level),
                battery_level=account.battery_level,
                last_sync_time=stamp,
                device_version="Pixel Watch 3",
            )
        )
    if alt == "proto":
        return response.SerializeToString(), PROTOBUF
    return json.dumps(MessageToDict(response, use_integers_for_enums="enum-encoding=int" in alt)).encode(), JSON
