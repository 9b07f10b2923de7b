"""One page of `dataPoints:reconcile` over HTTP, in the API's binary wire format.

Why fitpipe does not use the generated client's pager here: its REST transport always asks for
`$alt=json;enum-encoding=int` and parses each page with protobuf's pure-Python json_format,
0.6 to 1.5 s of CPU for a page of 10,000 points. With 1-second heart rate that was most of
fitpipe's CPU and the reason a nightly run waited for CPU, not for the network (README,
"Requests and throughput"). Google's API front end serves every REST API as protobuf too
(system parameter `$alt=proto`, docs.cloud.google.com/apis/docs/system-parameters), which
protobuf's C parser reads about a hundred times faster.

So fitpipe sends the requests itself, still with Google's pieces for everything but the paging
loop: the generated request message and the transport's own HTTP rule for the method (turned
into a URL by google-api-core's transcoder), google-auth's AuthorizedSession (which refreshes
the access token and repeats a request answered 401), the generated response type's parser,
and google-api-core's exception classes for HTTP errors, so callers see the same errors as
from the generated client.

FITPIPE_HEALTH_API_WIRE=json asks for the JSON wire instead: the same messages, parsed the way
the generated client does; for comparison, or a server that cannot answer protobuf.

FITPIPE_HEALTH_MAX_IN_FLIGHT=K caps the requests in flight across all of a run's workers. A worker
spends part of each participant-day parsing and loading with no request out; with more workers
than K, another worker's request fills that gap, so K request slots stay busy while the CPU work
happens beside them (e.g. `--workers 4` with K=2 on a 2-core machine).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from typing import Any

from fitpipe.errors import BadInput

ENV_WIRE = "FITPIPE_HEALTH_API_WIRE"
ENV_MAX_IN_FLIGHT = "FITPIPE_HEALTH_MAX_IN_FLIGHT"
# The `$alt` system parameter per wire; the JSON one is what the generated client sends.
ALT = {"proto": "proto", "json": "json;enum-encoding=int"}
PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf", "application/octet-stream")


def wire_from_environment() -> str:
    wire = (os.environ.get(ENV_WIRE) or "proto").strip().lower()
    if wire not in ALT:
        raise BadInput(f"{ENV_WIRE} must be proto or json, got {wire!r}")
    return wire


def _in_flight_slots() -> Any:
    text = (os.environ.get(ENV_MAX_IN_FLIGHT) or "").strip()
    if not text:
        return None
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise BadInput(f"{ENV_MAX_IN_FLIGHT} must be a whole number of requests, at least 1; got {text!r}")
    return multiprocessing.get_context("fork").BoundedSemaphore(limit)


_SLOTS: Any = None


def share_request_slots() -> None:
    """Made anew by each run before it forks its workers (Source.prepare_workers), so they share it."""
    global _SLOTS
    _SLOTS = _in_flight_slots()


def request_slot() -> contextlib.AbstractContextManager:
    return _SLOTS if _SLOTS is not None else contextlib.nullcontext()


def _http_rule() -> list[dict[str, str]]:
    from google.devicesandservices.health_v4.services.data_points_service.transports.rest_base import (
        _BaseDataPointsServiceRestTransport as Rest,
    )

    return Rest._BaseReconcileDataPoints._get_http_options()


def _paired_devices_rule() -> list[dict[str, str]]:
    from google.devicesandservices.health_v4.services.health_profile_service.transports.rest_base import (
        _BaseHealthProfileServiceRestTransport as Rest,
    )

    return Rest._BaseListPairedDevices._get_http_options()


def _is_protobuf(response: Any) -> bool:
    return response.headers.get("Content-Type", "").split(";")[0].strip() in PROTOBUF_TYPES


def api_error(response: Any) -> Exception:
    """google-api-core's exception for an HTTP error. Google may describe the error as a
    google.rpc.Status in protobuf (as asked) or in JSON (front ends that fail before the API
    does); both become the same exception, which keeps the response for its Retry-After."""
    from google.api_core import exceptions
    from google.rpc import status_pb2

    payload: Any = None
    if _is_protobuf(response):
        try:
            status = status_pb2.Status.FromString(response.content)
            payload = {"error": {"code": status.code, "message": status.message}}
        except Exception:  # a truncated or foreign body: the status code still says what happened
            payload = None
    else:
        try:
            payload = response.json()
        except ValueError:
            payload = None
    if not payload:
        payload = {"error": {"message": response.reason or "no description"}}
    return exceptions.format_http_response_error(response, response.request.method, response.request.url, payload)


class ReconcilePages:
    """Sends ReconcileDataPointsRequests through an authorised session and returns each answer
    as the raw ReconcileDataPointsResponse protobuf (what fitpipe.sources.google_health.parse reads).
    `method` picks another of the API's list methods: "pairedDevices" (ListPairedDevicesRequest in,
    ListPairedDevicesResponse out)."""

    def __init__(self, session: Any, endpoint: str, wire: str = "proto", method: str = "reconcile"):
        from google.devicesandservices import health_v4

        self.session = session
        self.endpoint = endpoint.rstrip("/") if "://" in endpoint else f"https://{endpoint.rstrip('/')}"
        self.wire = wire
        if method == "pairedDevices":
            self.response_type = health_v4.ListPairedDevicesResponse.pb()
            self.rule = _paired_devices_rule()
        else:
            self.response_type = health_v4.ReconcileDataPointsResponse.pb()
            self.rule = _http_rule()

    def page(self, request: Any, timeout: float) -> Any:
        from google.api_core import rest_helpers
        from google.protobuf import json_format

        transcoded, _, query = rest_helpers.transcode_request(self.rule, request, rest_numeric_enums=True)
        query["$alt"] = ALT[self.wire]
        with request_slot():
            response = self.session.request(
                transcoded["method"].upper(),
                self.endpoint + transcoded["uri"],
                params=rest_helpers.flatten_query_params(query, strict=True),
                timeout=timeout,
            )
        if response.status_code >= 400:
            raise api_error(response)
        # By what arrived, not what was asked: a server that ignores `$alt` still answers JSON.
        if _is_protobuf(response):
            return self.response_type.FromString(response.content)
        return json_format.Parse(response.content, self.response_type(), ignore_unknown_fields=True)
