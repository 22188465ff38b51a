"""Adapters of crm-audit-transform: PostgreSQL (CRM), MongoDB (CDP), USMAN over HTTP, files, and the runner.

Each adapter implements a port of ``crm_audit_transform.ports``; none is imported by the core, and
no connection is opened at import time.
"""
