"""One module per area of the API, each with a module-level `router`; every module in this
package is mounted under /api/v1 (adding an area is adding a file)."""
import importlib
import pkgutil

from fastapi import APIRouter


def all_routers() -> list[APIRouter]:
    modules = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    return [importlib.import_module(f"{__name__}.{name}").router for name in modules]
