"""The data audit: decode every image once (read-only) and report what cannot be used, and why."""

from headstart.data.audit.audit import (
    BAD_KINDS,
    AuditReport,
    BadFile,
    audit_folder,
    audit_splits,
    inspect_file,
    scan_tree,
)

__all__ = [
    "BAD_KINDS",
    "AuditReport",
    "BadFile",
    "audit_folder",
    "audit_splits",
    "inspect_file",
    "scan_tree",
]
