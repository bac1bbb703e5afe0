"""In-memory spatial index of technicians' last known positions, one per tenant and process.

Nearest-technician dispatch must not scan 10,000 rows per decision: positions are bucketed
in a grid of ~5 km cells, and a query walks rings of cells outwards from the site until no
unvisited cell can hold anyone nearer than the best found. The index is refreshed from the
roster rows changed since its last look (roster.updated_at), so every process converges.
"""
import math
import threading

from .domain import Candidate, distance_m

CELL_DEG = 0.05
METRES_PER_DEG = 111_195.0


def _cell(lat: float, lng: float) -> tuple[int, int]:
    return int(math.floor(lat / CELL_DEG)), int(math.floor(lng / CELL_DEG))


class TechnicianIndex:
    def __init__(self):
        self.by_id: dict = {}
        self.cells: dict[tuple[int, int], dict] = {}
        self.watermark = None  # newest roster.updated_at seen
        self.loaded_at: float = 0.0
        self.checked_at: float = 0.0  # last look at the roster (monotonic)
        self.stale = True  # this process changed the roster: look again before the next decision
        self.lock = threading.Lock()

    def upsert(self, candidate: Candidate) -> None:
        self.remove(candidate.user_id)
        self.by_id[candidate.user_id] = candidate
        if candidate.latitude is not None and candidate.longitude is not None:
            self.cells.setdefault(_cell(candidate.latitude, candidate.longitude), {})[candidate.user_id] = candidate

    def remove(self, user_id) -> None:
        old = self.by_id.pop(user_id, None)
        if old is not None and old.latitude is not None and old.longitude is not None:
            bucket = self.cells.get(_cell(old.latitude, old.longitude))
            if bucket is not None:
                bucket.pop(user_id, None)

    def assigned(self, user_id, at) -> None:
        """This process just gave them an order (round robin reads it; other processes see it at
        their next full reload)."""
        candidate = self.by_id.get(user_id)
        if candidate is not None:
            candidate.last_assigned_at = at

    def candidates(self) -> list[Candidate]:
        return list(self.by_id.values())

    def nearest(self, pool: list[Candidate], site: tuple[float, float], max_rings: int = 400):
        """(distance m, candidate) of the nearest member of `pool` with a position, or None."""
        allowed = None if len(pool) == len(self.by_id) else {c.user_id for c in pool}
        lat, lng = float(site[0]), float(site[1])
        ci, cj = _cell(lat, lng)
        if not self.cells:
            return None
        # No need to walk past the farthest occupied cell.
        reach = max(max(abs(i - ci), abs(j - cj)) for i, j in self.cells)
        best = None
        for r in range(min(reach, max_rings) + 1):
            # A cell r rings away is at least (r - 1) cells away; longitude cells shrink with
            # latitude, so the bound uses the narrower side.
            cell_m = CELL_DEG * METRES_PER_DEG * max(math.cos(math.radians(min(abs(lat) + r * CELL_DEG, 89.0))), 0.01)
            if best is not None and best[0] <= (r - 1) * cell_m:
                break
            for i in range(ci - r, ci + r + 1):
                for j in (range(cj - r, cj + r + 1) if abs(i - ci) == r else (cj - r, cj + r)):
                    bucket = self.cells.get((i, j))
                    if not bucket:
                        continue
                    for c in bucket.values():
                        if allowed is not None and c.user_id not in allowed:
                            continue
                        d = distance_m(c.latitude, c.longitude, lat, lng)
                        if best is None or d < best[0] or (d == best[0] and str(c.user_id) < str(best[1].user_id)):
                            best = (d, c)
                if r == 0:
                    break
        if best is None and allowed is not None:
            # Pool members outside the walked rings (far away): scan them.
            located = [(distance_m(c.latitude, c.longitude, lat, lng), c) for c in pool if c.latitude is not None]
            best = min(located, key=lambda x: (x[0], str(x[1].user_id))) if located else None
        return best


_INDEXES: dict = {}
_GUARD = threading.Lock()


def index_for(tenant_id) -> TechnicianIndex:
    with _GUARD:
        index = _INDEXES.get(tenant_id)
        if index is None:
            index = _INDEXES[tenant_id] = TechnicianIndex()
        return index


def forget_all() -> None:
    """Tests: start from empty indexes."""
    with _GUARD:
        _INDEXES.clear()
