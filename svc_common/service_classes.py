"""Which nameko class is each service. Importable without side effects (unlike svc_common.runner,
which monkey-patches the whole process for eventlet): tests and tools inspect the classes safely."""
import importlib

SERVICES = ("tickets", "inventory", "customers", "notify", "reports")


def load_service_class(name: str):
    module = importlib.import_module(f"{name}.service")
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "name", None) == name and hasattr(value, "platform"):
            return value
    raise LookupError(f"no nameko service named {name!r} in {module.__name__}")
