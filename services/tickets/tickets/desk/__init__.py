"""Service desk (服务台), planned work (计划任务), settlement (审核结算), return visits (回访), knowledge
base (知识库) and announcements (通知公告), service reports (服务报告): the desk side of the tickets service.

Tables live on the tickets `Base`; work orders are created and moved only through the work-order
handlers (`tickets.handlers`), so their rules and events stay in one place."""
