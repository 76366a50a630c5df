"""The server's HTTPS web side: the self-service request form and the satisfaction question
(docs/web.md), in aiohttp on the server's own event loop and certificate."""
