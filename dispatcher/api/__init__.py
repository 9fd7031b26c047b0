"""The HTTP API (FastAPI, served by uvicorn): the web process of the Procfile.

``create_app`` in app.py builds it; each resource is a router in its own module. Bad input is a
problem+json error (problems.py); callers are end users with a JWT or services with an API key
(auth.py). The endpoints call the same functions as the control commands and the CLI.
"""
