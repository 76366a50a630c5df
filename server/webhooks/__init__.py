"""Outbound webhooks: every ticket event POSTed, signed, in order, to the admin's endpoints
(docs/webhooks.md).

addresses.py  what an admin may give (https URL, event kinds, secret, CA)
endpoints.py  the endpoint store: add (secret sealed, shown once), list, remove; audited
feed.py       the ticket events in (xact_id, id) order, under PostgreSQL's snapshot horizon
signing.py    the HMAC-SHA256 signature headers, and the check a receiver makes
posting.py    one HTTPS POST (aiohttp): verified TLS, no redirects, bounded in time
delivery.py   the server's delivery task: leases, the cursor, retries with backoff
"""
