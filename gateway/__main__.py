"""`python -m gateway`: serve the API with uvicorn (JSON logs, settings from the environment)."""
import uvicorn

from svc_common.logging import configure_logging
from svc_common.settings import get_settings

from .settings import get_gateway_settings


def main() -> None:
    settings = get_settings()
    configure_logging("gateway", settings.log_level)
    gw = get_gateway_settings()
    uvicorn.run("gateway.app:app", host=gw.host, port=gw.port, log_config=None, access_log=False,
                proxy_headers=True, timeout_graceful_shutdown=20)


if __name__ == "__main__":
    main()
