"""Areas → groups: geocodes, polygons (axis order!), circles on the sphere, names as a fallback."""

from __future__ import annotations

import unicodedata

import pytest

from controlplane.cap import AreaGroup, AreaMap
from controlplane.cap.areas import groups_for_areas, haversine_km
from controlplane.cap.parse import Area, Circle, Point
from controlplane.cap.settings import load_areas
from tests.unit.controlplane.conftest import DATA

# A box over Ward 12 of District 10 and the drill bench, as CAP writes it: lat,lon.
WARD_12_BOX: tuple[Point, ...] = (
    (10.765, 106.660),
    (10.765, 106.668),
    (10.775, 106.668),
    (10.775, 106.660),
    (10.765, 106.660),
)


@pytest.fixture(scope="module")
def area_map() -> AreaMap:
    return load_areas(DATA / "areas.toml")


def area(
    description: str = "",
    polygons: tuple[tuple[Point, ...], ...] = (),
    circles: tuple[Circle, ...] = (),
    geocodes: tuple[tuple[str, str], ...] = (),
) -> Area:
    return Area(description, polygons, circles, geocodes)


def test_a_geocode_of_the_configured_scheme_names_its_ward(area_map: AreaMap) -> None:
    assert groups_for_areas([area(geocodes=(("VN-DVHC", "27178"),))], area_map) == ["q10-p13"]
    assert groups_for_areas([area(geocodes=(("vn-dvhc", "27178"),))], area_map) == ["q10-p13"]


def test_a_geocode_of_another_scheme_is_not_a_ward_code(area_map: AreaMap) -> None:
    assert groups_for_areas([area(geocodes=(("FIPS6", "27178"),))], area_map) == []


def test_a_polygon_holds_the_groups_whose_location_is_inside(area_map: AreaMap) -> None:
    assert groups_for_areas([area(polygons=(WARD_12_BOX,))], area_map) == ["q10-p12", "lab-drill"]


def test_the_polygon_axis_order_is_lat_lon(area_map: AreaMap) -> None:
    # Read as x,y instead, the same numbers would be a box near (106.66 N, 10.77 E): nothing.
    swapped = tuple((lon, lat) for lat, lon in WARD_12_BOX)
    assert groups_for_areas([area(polygons=(swapped,))], area_map) == []


def test_a_location_on_the_polygon_edge_is_inside(area_map: AreaMap) -> None:
    # Ward 12's location is 10.7700,106.6640: put the western edge exactly through it.
    edge = ((10.76, 106.664), (10.76, 106.67), (10.78, 106.67), (10.78, 106.664), (10.76, 106.664))
    assert "q10-p12" in groups_for_areas([area(polygons=(edge,))], area_map)


def test_a_self_intersecting_polygon_is_repaired_not_misread() -> None:
    # A bow tie: two triangles, west and east, touching at 10.770,106.664.
    bow_tie: tuple[Point, ...] = (
        (10.765, 106.660),
        (10.775, 106.668),
        (10.765, 106.668),
        (10.775, 106.660),
        (10.765, 106.660),
    )
    places = AreaMap(
        groups=(
            AreaGroup(id="west-lobe", name="w", locations=((10.770, 106.661),)),
            AreaGroup(id="east-lobe", name="e", locations=((10.770, 106.667),)),
            AreaGroup(id="between", name="b", locations=((10.774, 106.664),)),
        )
    )
    assert groups_for_areas([area(polygons=(bow_tie,))], places) == ["west-lobe", "east-lobe"]


def test_a_circle_is_measured_in_kilometres_on_the_sphere(area_map: AreaMap) -> None:
    ben_nghe = Circle(10.7769, 106.7009, 1.0)
    assert groups_for_areas([area(circles=(ben_nghe,))], area_map) == ["q1-ben-nghe"]
    # District 10's wards are 3.5-4 km west of Bến Nghé: a 5 km circle takes them in.
    wide = Circle(10.7769, 106.7009, 5.0)
    assert groups_for_areas([area(circles=(wide,))], area_map) == [
        "q10-p12",
        "q10-p13",
        "q1-ben-nghe",
        "lab-drill",
    ]
    # 0.04 km is 40 m: Bến Nghé only. Taken as degrees (0.04° ≈ 4.4 km) it would reach
    # District 10.
    tiny = Circle(10.7769, 106.7009, 0.04)
    assert groups_for_areas([area(circles=(tiny,))], area_map) == ["q1-ben-nghe"]


def test_haversine_is_right_where_it_can_be_checked() -> None:
    # One degree of longitude on the equator: 2πR/360 with the mean radius.
    assert haversine_km((0.0, 0.0), (0.0, 1.0)) == pytest.approx(111.195, abs=0.001)
    # Hà Nội (Hoàn Kiếm) to Hồ Chí Minh City (Bến Nghé): about 1,140 km as the crow flies.
    assert haversine_km((21.0285, 105.8542), (10.7769, 106.7009)) == pytest.approx(1142, abs=5)


def test_names_count_only_without_codes_polygons_or_circles(area_map: AreaMap) -> None:
    by_name = area("Phường Phú Hội, TP Huế; Phường Vĩnh Ninh, TP Huế")
    assert groups_for_areas([by_name], area_map) == ["hue-phu-hoi"]
    assert groups_for_areas([area("  p12   q10 ")], area_map) == ["q10-p12"]  # case, spaces
    # With a geocode, the description is for people only.
    coded = area("Phường Phú Hội, TP Huế", geocodes=(("VN-DVHC", "27175"),))
    assert groups_for_areas([coded], area_map) == ["q10-p12"]


def test_decomposed_names_match(area_map: AreaMap) -> None:
    nfd = unicodedata.normalize("NFD", "Phường Bến Nghé, Quận 1")
    assert groups_for_areas([area(nfd)], area_map) == ["q1-ben-nghe"]


def test_several_areas_add_up_in_map_order(area_map: AreaMap) -> None:
    areas = [
        area(geocodes=(("VN-DVHC", "26740"),)),
        area(geocodes=(("VN-DVHC", "27175"),)),
    ]
    assert groups_for_areas(areas, area_map) == ["q10-p12", "q1-ben-nghe"]
