"""Outbound webhooks: every ticket event POSTed, signed, in order, to the admin's endpoints."""
