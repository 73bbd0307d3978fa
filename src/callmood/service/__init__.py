"""The web service: FastAPI app, routes, dashboard pages, jobs and webhooks."""
