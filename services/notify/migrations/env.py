from notify.models import Base
from svc_common.migrate import run_env

run_env(Base.metadata)
