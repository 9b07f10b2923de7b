"""Points as pages: the AIP-160 filters the API documents for dataPoints, Google's merge of
overlapping sources (`reconcile`), paging newest first with page tokens, and each page serialised
for the wire asked for: protobuf for `$alt=proto`, else JSON."""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import json
import random
import re
import threading
from typing import Any
from zoneinfo import ZoneInfo

from fitpipe.sources.google_health.standin.days import Builders, DayMaker
from fitpipe.sources.google_health.standin.model import JSON, PROTOBUF, Account, BadRequest, Point

Clauses = list[tuple[str, str, Any]]


def parse_filter(text: str) -> Clauses:
    """The AIP-160 subset the API documents for dataPoints: `field >= "literal"` joined by AND."""
    clauses = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = re.fullmatch(r'([a-z_]+(?:\.[a-z_]+)+)\s*(>=|<)\s*"([^"]+)"', part.strip())
        if not match:
            raise BadRequest(f"unsupported filter clause: {part.strip()!r}")
        name, operator, literal = match.groups()
        clauses.append((name, operator, _literal(name, literal)))
    return clauses


def _literal(name: str, text: str) -> Any:
    try:
        if name.endswith(".date"):
            return dt.date.fromisoformat(text)
        if "civil" in name:
            return dt.datetime.fromisoformat(text)
        if not text.endswith("Z"):
            raise ValueError
        return dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.UTC)
    except ValueError:
        raise BadRequest(f"bad literal {text!r} for {name}") from None


def _matches(point: Point, clauses: Clauses) -> bool:
    for name, operator, literal in clauses:
        if name not in point.filters:
            raise BadRequest(f"unsupported filter field {name} for data type {point.data_type}")
        value = point.filters[name]
        if not (value >= literal if operator == ">=" else value < literal):
            return False
    return True


def _days_for(clauses: Clauses, timezone: str) -> list[dt.date]:
    """The local days whose generated points may match the filter: those the bounds fall on, and
    the day before (its night runs into the next morning; its daily HRV is dated the next day)."""
    zone = ZoneInfo(timezone)
    bounds = []
    for _, operator, literal in clauses:
        if operator == "<":  # exclusive: the last day is the one just before the bound
            literal = literal - (dt.timedelta(days=1) if type(literal) is dt.date else dt.timedelta(microseconds=1))
        if isinstance(literal, dt.datetime):
            literal = literal.astimezone(zone).date() if literal.tzinfo else literal.date()
        bounds.append(literal)
    if len(bounds) < 2:
        raise BadRequest("a dataPoints filter must give a start and an end")
    first, last = min(bounds) - dt.timedelta(days=1), max(bounds)
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


class DataPages:
    """The data half of the stand-in's state (a part of HealthApi, which holds the lock and the accounts)."""

    lock: threading.RLock
    accounts: dict[str, Account]

    def __init__(self) -> None:
        self._builders: Builders | None = None
        # An account's generated days, by data type.
        self._days: dict[tuple[str, dt.date], dict[str, list[Point]]] = {}
        # A query's matching points in page order, and the pages already serialised from them
        # ((offset, size, wire) -> (body, content type)): Google's CPU, which is not fitpipe's
        # and which a benchmark should not count against it more than once.
        self._answers: dict[tuple[str, str], tuple[list[Point], dict]] = {}
        # Data pages served per wire (the `$alt` asked for: "proto" or "json").
        self.served: collections.Counter[str] = collections.Counter()

    def builders(self) -> Builders:
        """Google's types, imported on the first data request (the server starts without them)."""
        with self.lock:
            if self._builders is None:
                self._builders = Builders()
            return self._builders

    def points(self, name: str, data_type: str, clauses: Clauses) -> list[Point]:
        with self.lock:
            account = self.accounts[name]
            maker = DayMaker(self.builders())
            made: list[Point] = []
            for day in _days_for(clauses, account.timezone):
                key = (name, day)
                if key not in self._days:
                    by_type: dict[str, list[Point]] = collections.defaultdict(list)
                    for point in maker.make(account, day):
                        by_type[point.data_type].append(point)
                    self._days[key] = by_type
                made.extend(self._days[key].get(data_type, ()))
            synced = account.synced_until
        return [p for p in made if (synced is None or p.known_at <= synced) and _matches(p, clauses)]

    def _answer(self, name: str, data_type: str, clauses: Clauses, family: str, reconcile: bool) -> list[Point]:
        found = self.points(name, data_type, clauses)
        if reconcile:
            if family == "google-wearables":
                found = [p for p in found if p.source == "watch"]
            else:  # Google's merge, simplified: one point per instant, the watch's when both have one
                by_key: dict[Any, Point] = {}
                for p in sorted(found, key=lambda p: p.source != "watch"):
                    by_key.setdefault((p.order, repr(p.filters)), p)
                found = list(by_key.values())
        found.sort(key=lambda p: p.order, reverse=True)
        with self.lock:
            if self.accounts[name].shuffle_pages:
                random.Random(len(found)).shuffle(found)
        return found

    def endless_page(self, query: dict[str, str], reconcile: bool) -> tuple[bytes, str]:
        """An empty page that always names a next one, a new token each time (Faults.endless_pages)."""
        from google.protobuf.json_format import MessageToDict

        b = self.builders()
        response = b.pb["ReconcileDataPointsResponse" if reconcile else "ListDataPointsResponse"]()
        previous = query.get("pageToken") or "again-0"
        response.next_page_token = f"again-{int(previous.rsplit('-', 1)[-1]) + 1}"
        if query.get("$alt") == "proto":
            return response.SerializeToString(), PROTOBUF
        return json.dumps(MessageToDict(response)).encode(), JSON

    def list_page(self, name: str, data_type: str, query: dict[str, str], reconcile: bool) -> tuple[bytes, str]:
        """One page of the answer, serialised for the wire `$alt` asks for: protobuf for
        `proto`, else JSON (enums as numbers when `enum-encoding=int`, as the generated client asks)."""
        family = query.get("dataSourceFamily", "").rsplit("/", 1)[-1] or "all-sources"
        fingerprint = hashlib.sha256(f"{data_type}|{query.get('filter')}|{family}|{reconcile}".encode()).hexdigest()[
            :16
        ]
        with self.lock:
            answer = self._answers.get((name, fingerprint))
        if answer is None:
            answer = (self._answer(name, data_type, parse_filter(query.get("filter", "")), family, reconcile), {})
            with self.lock:
                answer = self._answers.setdefault((name, fingerprint), answer)
        found, built = answer
        limit = 25 if data_type in ("sleep", "exercise") else 10_000
        size = min(int(query.get("pageSize") or (25 if limit == 25 else 1440)), limit)
        offset = 0
        if query.get("pageToken"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["pageToken"]))
                offset = int(token["offset"])
            except (ValueError, KeyError, TypeError):
                raise BadRequest("invalid page token") from None
            if token.get("query") != fingerprint:
                raise BadRequest("the page token belongs to another query")
        alt = query.get("$alt", "json")
        wire = "proto" if alt == "proto" else "json"
        with self.lock:
            self.served[wire] += 1
            page = built.get((offset, size, alt))
        if page is None:
            response = self._page(found, offset, size, fingerprint, reconcile)
            if wire == "proto":
                page = (response.SerializeToString(), PROTOBUF)
            else:
                from google.protobuf.json_format import MessageToDict

                page = (
                    json.dumps(MessageToDict(response, use_integers_for_enums="enum-encoding=int" in alt)).encode(),
                    JSON,
                )
            with self.lock:
                built[(offset, size, alt)] = page
        return page

    def _page(self, found: list[Point], offset: int, size: int, fingerprint: str, reconcile: bool):
        page = found[offset : offset + size]
        b = self.builders()
        if reconcile:
            response = b.pb["ReconcileDataPointsResponse"](
                data_points=[
                    b.pb["ReconciledDataPoint"](data_point_name=p.name, **{p.field_name: p.message}) for p in page
                ]
            )
        else:
            response = b.pb["ListDataPointsResponse"](
                data_points=[
                    b.pb["DataPoint"](name=p.name, data_source=b.data_source(p.source), **{p.field_name: p.message})
                    for p in page
                ]
            )
        if offset + size < len(found):
            response.next_page_token = base64.urlsafe_b64encode(
                json.dumps({"offset": offset + size, "query": fingerprint}).encode()
            ).decode()
        return response
