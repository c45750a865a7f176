"""The operator's admin listener: Prometheus metrics, a health check and a status page."""

from service.admin.access import exposure_problem
from service.admin.live import CountingDefender, Live, UploadEvents
from service.admin.server import AdminServer

__all__ = ["AdminServer", "CountingDefender", "Live", "UploadEvents", "exposure_problem"]
