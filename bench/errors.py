"""Why a case has no figures."""


class NotAvailable(Exception):
    """A part the case needs is missing or broken; the row says ``n/a (reason)`` and the run goes on."""
