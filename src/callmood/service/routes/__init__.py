"""HTTP and WebSocket routes of the service, one router per area."""
