"""The data audit: decode every image once (read-only) and report what cannot be used, and why.

Modules: ``report`` (BadFile, Leak, AuditReport), ``inspect`` (one file: read, decode, classify),
``cache`` (each file's result kept by file signature), ``tree`` (the read-only walk of a data
folder), ``audit`` (audit_splits, audit_folder).
"""

from headstart.data.audit.audit import audit_folder, audit_splits
from headstart.data.audit.inspect import inspect_file
from headstart.data.audit.report import BAD_KINDS, AuditReport, BadFile, Leak, is_data_report
from headstart.data.audit.tree import TreeAudit, audit_tree

__all__ = [
    "BAD_KINDS",
    "AuditReport",
    "BadFile",
    "Leak",
    "TreeAudit",
    "audit_folder",
    "audit_splits",
    "audit_tree",
    "inspect_file",
    "is_data_report",
]
