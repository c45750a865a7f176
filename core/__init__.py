"""The foundation every part shares: typed settings, the SQLite state store, tenants, logs.

Imports run one way: ``service`` wires ``sftpd``, ``ingest`` and ``ledger``, which all build on
``core``; ``core`` imports none of them.
"""
