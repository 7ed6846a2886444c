"""CAP areas → target groups, through the area map (the only module that imports shapely).

An area is located by what a machine can read first: geocodes (administrative-unit codes of a
configured scheme), polygons and circles. A group is targeted when one of its codes is among
the geocodes, or one of its ``locations`` is inside a polygon (boundary included) or a circle.
Only when an area has none of these does its ``areaDesc`` count, matched against the groups'
names (NFC, case and spacing ignored; the whole text or one of its ``;``-separated parts).

Axis order: CAP writes points as ``lat,lon``; shapely works in x/y, so every point is handed
to shapely as ``(lon, lat)``. Circles are measured on the sphere (haversine, mean Earth
radius 6371.0088 km: well within a metre over a ward), not as degrees.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable

import shapely
from shapely.geometry import Polygon

from controlplane.cap.parse import Area, Circle, Point
from controlplane.cap.settings import AreaGroup, AreaMap

EARTH_RADIUS_KM = 6371.0088
_EPSILON_KM = 1e-6  # a location exactly on the circle's edge is inside


def groups_for_areas(areas: Iterable[Area], area_map: AreaMap) -> list[str]:
    """The ids of the groups that any of ``areas`` covers, in the area map's order."""
    hit: set[str] = set()
    for area in areas:
        hit.update(g.id for g in _groups_for_area(area, area_map))
    return [g.id for g in area_map.groups if g.id in hit]


def _groups_for_area(area: Area, area_map: AreaMap) -> list[AreaGroup]:
    schemes = {name.casefold() for name in area_map.geocode_names}
    codes = {value for name, value in area.geocodes if name.casefold() in schemes}
    if not codes and not area.polygons and not area.circles:
        return _by_name(area.description, area_map.groups)
    polygons = [_shape(p) for p in area.polygons]
    found = []
    for group in area_map.groups:
        if codes.intersection(group.codes) or any(
            _inside(loc, polygons, area.circles) for loc in group.locations
        ):
            found.append(group)
    return found


def _shape(points: tuple[Point, ...]) -> shapely.Geometry:
    polygon = Polygon([(lon, lat) for lat, lon in points])  # shapely: x = lon, y = lat
    # A self-intersecting ring (a feed's bow-tie) is repaired rather than mis-answered.
    return polygon if polygon.is_valid else shapely.make_valid(polygon)


def _inside(
    location: tuple[float, float], polygons: list[shapely.Geometry], circles: Iterable[Circle]
) -> bool:
    lat, lon = location
    if any(shapely.covers(p, shapely.Point(lon, lat)) for p in polygons):
        return True
    return any(
        haversine_km((lat, lon), (c.lat, c.lon)) <= c.radius_km + _EPSILON_KM for c in circles
    )


def haversine_km(a: Point, b: Point) -> float:
    """The great-circle distance between two (lat, lon) points, in kilometres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def _by_name(description: str, groups: Iterable[AreaGroup]) -> list[AreaGroup]:
    wanted = {_key(description)} | {_key(part) for part in description.split(";")}
    wanted.discard("")
    return [g for g in groups if wanted.intersection(_key(n) for n in (g.name, *g.names))]
