import gateway.api_keys  # noqa: F401 (its table is on Base.metadata)
from gateway.models import Base
from svc_common.migrate import run_env

run_env(Base.metadata)
