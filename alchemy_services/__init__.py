"""The platform's own Alchemy services: the HTTP router and the hello_world example service.

Both speak the Alchemy protocol over RabbitMQ (docs/protocol.md) and run from one image built from this
directory (``Dockerfile``, targets ``router`` and ``hello_world``).
"""
