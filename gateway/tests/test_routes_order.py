"""The API's areas can be matched in any order (all_routers puts the busiest first): no route of one
area matches a path of another's, so no area can shadow another's endpoint."""
import re

from fastapi.routing import APIRoute

from gateway import routes


def test_no_route_of_one_area_matches_a_path_of_another():
    areas = [[r for r in router.routes if isinstance(r, APIRoute)] for router in routes.all_routers()]
    assert sum(len(area) for area in areas) > 200
    shadowed = []
    for i, own in enumerate(areas):
        for j, theirs in enumerate(areas):
            if i == j:
                continue
            for route in own:
                for path in (re.sub(r"\{[^}]+\}", "x1", r.path) for r in theirs if r.methods & route.methods):
                    if route.path_regex.match(path):
                        shadowed.append((route.path, path))
    assert shadowed == []


def test_the_busiest_areas_are_matched_first():
    first = [router.routes[0].path for router in routes.all_routers()[:len(routes.BUSIEST)]]
    assert [p.split("/")[1] for p in first] == ["work-orders", "notifications", "customers"]
