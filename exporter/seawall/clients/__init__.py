"""The resilient HTTP client pipeline shared by `seawall.httpx` and `seawall.requests`."""
