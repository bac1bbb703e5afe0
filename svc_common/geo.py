"""Distances on the earth, for check-in radii, nearest-technician dispatch and nearby customers."""
import math

EARTH_RADIUS_M = 6_371_000.0


def distance_m(lat1, lng1, lat2, lng2) -> float:
    """Great-circle distance (haversine) in metres; takes floats or Decimals."""
    p1, p2 = math.radians(float(lat1)), math.radians(float(lat2))
    dp, dl = p2 - p1, math.radians(float(lng2) - float(lng1))
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))
