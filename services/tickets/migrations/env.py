from tickets.models import Base
import tickets.desk.models  # noqa: F401,E402 (desk tables on the same Base)
from svc_common.migrate import run_env

run_env(Base.metadata)
