"""The `imagereview` command: a plain HTTP client of the JSON API, without Django."""
